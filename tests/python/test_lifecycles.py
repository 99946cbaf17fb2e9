"""API lifecycles of individual kinds, each checked as the upstream
conformance test named in its docstring checks it (through the official
Python client)."""

import json
import socket
import time

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException

from waiting import until


def status_of(call, *args, **kwargs):
    with pytest.raises(ApiException) as e:
        call(*args, **kwargs)
    return e.value.status


def test_configmap_and_secret_with_an_empty_key_are_refused(core, namespace):
    """[sig-node] ConfigMap should fail to create ConfigMap with empty key [Conformance]
    [sig-node] Secrets should fail to create secret due to empty secret key [Conformance]"""
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="empty-key"), data={"": "value"})
    assert status_of(core.create_namespaced_config_map, namespace, cm) == 422
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="empty-key"), data={"": "dmFsdWU="})
    assert status_of(core.create_namespaced_secret, namespace, secret) == 422


def test_configmap_lifecycle(core, namespace):
    """[sig-node] ConfigMap should run through a ConfigMap lifecycle [Conformance]"""
    labels = {"test-configmap-static": "true"}
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="lifecycle", labels=labels), data={"valueName": "value"}))
    core.patch_namespaced_config_map("lifecycle", namespace, {
        "metadata": {"labels": {"test-configmap": "patched"}}, "data": {"valueName": "value1"}})
    got = core.read_namespaced_config_map("lifecycle", namespace)
    assert got.data["valueName"] == "value1" and got.metadata.labels["test-configmap"] == "patched"
    everywhere = core.list_config_map_for_all_namespaces(label_selector="test-configmap-static=true")
    assert [c.metadata.name for c in everywhere.items] == ["lifecycle"]
    core.delete_collection_namespaced_config_map(namespace, label_selector="test-configmap-static=true")
    assert core.list_namespaced_config_map(namespace, label_selector="test-configmap-static=true").items == []


def test_secret_patch(core, namespace):
    """[sig-node] Secrets should patch a secret [Conformance]"""
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="patchme", labels={"testsecret-constant": "true"}),
        data={"key": "dmFsdWU="}, type="Opaque"))
    listed = core.list_secret_for_all_namespaces(label_selector="testsecret-constant=true")
    assert [s.metadata.name for s in listed.items] == ["patchme"]
    core.patch_namespaced_secret("patchme", namespace, {"metadata": {"labels": {"testsecret": "true"}}, "data": {"key": "dmFsdWUy"}})
    got = core.read_namespaced_secret("patchme", namespace)
    assert got.data == {"key": "dmFsdWUy"} and got.metadata.labels["testsecret"] == "true"
    core.delete_collection_namespaced_secret(namespace, label_selector="testsecret-constant=true")
    assert core.list_secret_for_all_namespaces(label_selector="testsecret-constant=true").items == []


@pytest.mark.parametrize("kind", ["configmap", "secret"])
def test_immutable_configmaps_and_secrets(core, namespace, kind):
    """[sig-storage] ConfigMap should be immutable if `immutable` field is set [Conformance]
    [sig-storage] Secrets should be immutable if `immutable` field is set [Conformance]"""
    if kind == "configmap":
        create, patch, read, delete = (core.create_namespaced_config_map, core.patch_namespaced_config_map,
                                       core.read_namespaced_config_map, core.delete_namespaced_config_map)
        body, data = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="frozen"), data={"a": "1"}), {"a": "2"}
    else:
        create, patch, read, delete = (core.create_namespaced_secret, core.patch_namespaced_secret,
                                       core.read_namespaced_secret, core.delete_namespaced_secret)
        body, data = client.V1Secret(metadata=client.V1ObjectMeta(name="frozen"), data={"a": "MQ=="}), {"a": "Mg=="}
    create(namespace, body)
    patch("frozen", namespace, {"data": data})
    patch("frozen", namespace, {"immutable": True})
    assert status_of(patch, "frozen", namespace, {"data": {"b": "Mw=="}}) == 422
    assert status_of(patch, "frozen", namespace, {"immutable": False}) == 422
    patch("frozen", namespace, {"metadata": {"labels": {"still": "mutable"}}})
    assert read("frozen", namespace).data == data
    delete("frozen", namespace)


def test_pod_templates(core, namespace):
    """[sig-node] PodTemplates should run the lifecycle of PodTemplates [Conformance]
    [sig-node] PodTemplates should replace a pod template [Conformance]
    [sig-node] PodTemplates should delete a collection of pod templates [Conformance]"""
    def template(name):
        return client.V1PodTemplate(
            metadata=client.V1ObjectMeta(name=name, labels={"podtemplate-set": "true"}),
            template=client.V1PodTemplateSpec(spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])))
    core.create_namespaced_pod_template(namespace, template("one"))
    core.patch_namespaced_pod_template("one", namespace, {"metadata": {"labels": {"podtemplate": "patched"}}})
    assert core.read_namespaced_pod_template("one", namespace).metadata.labels["podtemplate"] == "patched"
    current = core.read_namespaced_pod_template("one", namespace)
    current.metadata.annotations = {"updated": "true"}
    replaced = core.replace_namespaced_pod_template("one", namespace, current)
    assert replaced.metadata.annotations == {"updated": "true"}
    core.create_namespaced_pod_template(namespace, template("two"))
    core.create_namespaced_pod_template(namespace, template("three"))
    assert len(core.list_pod_template_for_all_namespaces(label_selector="podtemplate-set=true").items) == 3
    core.delete_collection_namespaced_pod_template(namespace, label_selector="podtemplate-set=true")
    assert core.list_namespaced_pod_template(namespace, label_selector="podtemplate-set=true").items == []


def test_namespace_patch_and_update(core):
    """[sig-api-machinery] Namespaces [Serial] should patch a Namespace [Conformance]
    [sig-api-machinery] Namespaces [Serial] should apply an update to a Namespace [Conformance]"""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="patched-ns")))
    core.patch_namespace("patched-ns", {"metadata": {"labels": {"testLabel": "testValue"}}})
    assert core.read_namespace("patched-ns").metadata.labels["testLabel"] == "testValue"
    ns = core.read_namespace("patched-ns")
    ns.metadata.labels["e2e"] = "updated"
    assert core.replace_namespace("patched-ns", ns).metadata.labels["e2e"] == "updated"
    core.delete_namespace("patched-ns")


def test_services_listed_everywhere_and_deleted_by_collection(core, namespace):
    """[sig-network] Services should find a service from listing all namespaces [Conformance]
    [sig-network] Services should delete a collection of services [Conformance]"""
    everywhere = core.list_service_for_all_namespaces()
    assert ("default", "kubernetes") in [(s.metadata.namespace, s.metadata.name) for s in everywhere.items]
    for i in range(3):
        core.create_namespaced_service(namespace, client.V1Service(
            metadata=client.V1ObjectMeta(name=f"svc-{i}", labels={"e2e-test-service": "delete"}),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80 + i)])))
    assert len(core.list_namespaced_service(namespace, label_selector="e2e-test-service=delete").items) == 3
    core.delete_collection_namespaced_service(namespace, label_selector="e2e-test-service=delete")
    assert core.list_namespaced_service(namespace, label_selector="e2e-test-service=delete").items == []


def test_watch_restarts_from_the_last_observed_version(core, namespace):
    """[sig-api-machinery] Watchers should be able to restart watching from the last resource version observed by the previous watch [Conformance]"""
    created = core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="w", labels={"watch-this-configmap": "restart"}), data={"mutation": "0"}))
    core.patch_namespaced_config_map("w", namespace, {"data": {"mutation": "1"}})
    core.patch_namespaced_config_map("w", namespace, {"data": {"mutation": "2"}})
    w = watch.Watch()
    seen, last = [], None
    for event in w.stream(core.list_namespaced_config_map, namespace, label_selector="watch-this-configmap=restart",
                          resource_version=created.metadata.resource_version, timeout_seconds=5):
        seen.append((event["type"], event["object"].data["mutation"]))
        last = event["object"].metadata.resource_version
        if len(seen) == 2:
            w.stop()
    assert seen == [("MODIFIED", "1"), ("MODIFIED", "2")]
    # Changes made while no one watches are delivered to a watch from the last version seen.
    core.patch_namespaced_config_map("w", namespace, {"data": {"mutation": "3"}})
    core.delete_namespaced_config_map("w", namespace)
    events = [(e["type"], e["object"].data["mutation"]) for e in watch.Watch().stream(
        core.list_namespaced_config_map, namespace, label_selector="watch-this-configmap=restart",
        resource_version=last, timeout_seconds=2)]
    assert events == [("MODIFIED", "3"), ("DELETED", "3")]


def lifecycle(api_client, api_version, kind, body, patch, namespace=None, status=None):
    """Discovery, create, get, list (here and everywhere), watch, patch,
    replace, status patch, delete and delete collection of one kind."""
    group = api_version.split("/")[0] if "/" in api_version else ""
    if group:
        groups = client.ApisApi(api_client).get_api_versions()
        assert group in [g.name for g in groups.groups]
    dyn = dynamic.DynamicClient(api_client)
    res = dyn.resources.get(api_version=api_version, kind=kind)
    ns = {"namespace": namespace} if namespace else {}
    labels = {"lifecycle": kind.lower()}
    made = []
    for i in range(2):
        obj = dict(body, apiVersion=api_version, kind=kind,
                   metadata={"name": f"{kind.lower()}-{i}", "labels": labels})
        made.append(res.create(body=obj, **ns))
    got = res.get(name=made[0].metadata.name, **ns)
    assert got.metadata.uid == made[0].metadata.uid
    assert len(res.get(label_selector="lifecycle=" + kind.lower(), **ns).items) == 2
    if namespace:
        assert len(res.get(label_selector="lifecycle=" + kind.lower()).items) == 2
    events = res.watch(label_selector="lifecycle=" + kind.lower(), resource_version=made[0].metadata.resourceVersion,
                       timeout=5, **ns)
    # Controllers may write the first object (status) in between: the next
    # creation seen is the second object's.
    first = next(e for e in events if e["type"] == "ADDED")
    events.close()
    assert first["object"].metadata.name == made[1].metadata.name
    patched = res.patch(name=made[0].metadata.name, body={"metadata": {"annotations": {"patched": "true"}}, **patch},
                        content_type="application/merge-patch+json", **ns)
    assert patched.metadata.annotations["patched"] == "true"
    # A read-modify-write, retried on conflict as upstream's e2e tests do
    # (RetryOnConflict): a controller may write the object in between.
    for attempt in range(5):
        current = res.get(name=made[0].metadata.name, **ns).to_dict()
        current["metadata"]["annotations"]["updated"] = "true"
        try:
            replaced = res.replace(body=current, **ns)
            break
        except dynamic.exceptions.ConflictError:
            if attempt == 4:
                raise
    assert replaced.metadata.annotations["updated"] == "true"
    if status:
        res_status = dyn.resources.get(api_version=api_version, kind=kind).subresources["status"]
        after = res_status.patch(name=made[0].metadata.name, body={"status": status},
                                 content_type="application/merge-patch+json", **ns)
        assert after.status.to_dict() == status or all(after.status.to_dict().get(k) == v for k, v in status.items())
    res.delete(name=made[0].metadata.name, **ns)
    assert len(res.get(label_selector="lifecycle=" + kind.lower(), **ns).items) == 1
    res.delete(label_selector="lifecycle=" + kind.lower(), **ns)
    assert res.get(label_selector="lifecycle=" + kind.lower(), **ns).items == []


def test_ingress_api(api_client, namespace):
    """[sig-network] Ingress API should support creating Ingress API operations [Conformance]"""
    backend = {"service": {"name": "default-backend", "port": {"number": 8080}}}
    lifecycle(api_client, "networking.k8s.io/v1", "Ingress", {"spec": {"defaultBackend": backend}},
              {"spec": {"rules": [{"host": "a.example.com"}]}}, namespace,
              status={"loadBalancer": {"ingress": [{"ip": "169.1.1.1"}]}})


def test_ingress_class_api(api_client):
    """[sig-network] IngressClass API should support creating IngressClass API operations [Conformance]"""
    lifecycle(api_client, "networking.k8s.io/v1", "IngressClass", {"spec": {"controller": "example.com/controller"}}, {})


def test_runtime_class_api(api_client):
    """[sig-node] RuntimeClass should support RuntimeClasses API operations [Conformance]"""
    lifecycle(api_client, "node.k8s.io/v1", "RuntimeClass", {"handler": "runc"}, {})


def test_lease_api(api_client, namespace):
    """[sig-node] Lease lease API should be available [Conformance]"""
    spec = {"holderIdentity": "holder", "leaseDurationSeconds": 30, "leaseTransitions": 0}
    lifecycle(api_client, "coordination.k8s.io/v1", "Lease", {"spec": spec},
              {"spec": {"holderIdentity": "holder2", "leaseTransitions": 1}}, namespace)


def test_priority_class_endpoints(api_client):
    """[sig-scheduling] SchedulerPreemption [Serial] PriorityClass endpoints verify PriorityClass endpoints can be operated with different HTTP methods [Conformance]"""
    lifecycle(api_client, "scheduling.k8s.io/v1", "PriorityClass", {"value": 1000}, {"description": "patched"})
    # The value of a PriorityClass cannot change.
    sched = client.SchedulingV1Api(api_client)
    sched.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name="fixed"), value=10))
    assert status_of(sched.patch_priority_class, "fixed", {"value": 20}) == 422


def test_limit_ranges_by_collection(api_client, core, namespace):
    """[sig-scheduling] LimitRange should list, patch and delete a LimitRange by collection [Conformance]"""
    other = namespace[:50] + "-b"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    limits = {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}
    for ns in (namespace, other):
        core.create_namespaced_limit_range(ns, client.V1LimitRange(
            metadata=client.V1ObjectMeta(name="lr", labels={"e2e-limitrange": "collection"}), spec=limits))
    assert len(core.list_limit_range_for_all_namespaces(label_selector="e2e-limitrange=collection").items) == 2
    patched = core.patch_namespaced_limit_range("lr", namespace, {"metadata": {"labels": {"patched": "true"}},
                                                                 "spec": {"limits": [{"type": "Container", "default": {"cpu": "1"}}]}})
    assert patched.spec.limits[0].default["cpu"] == "1"
    core.delete_collection_namespaced_limit_range(namespace, label_selector="e2e-limitrange=collection")
    remaining = core.list_limit_range_for_all_namespaces(label_selector="e2e-limitrange=collection").items
    assert [(l.metadata.namespace, l.metadata.name) for l in remaining] == [(other, "lr")]
    core.delete_namespace(other)


def test_events_are_one_store_for_both_apis(api_client, core, namespace):
    """[sig-instrumentation] Events API should ensure that an event can be fetched, patched, deleted, and listed [Conformance]
    [sig-instrumentation] Events API should delete a collection of events [Conformance]
    [sig-instrumentation] Events should manage the lifecycle of an event [Conformance]
    [sig-instrumentation] Events should delete a collection of events [Conformance]"""
    events = client.EventsV1Api(api_client)
    regarding = client.V1ObjectReference(kind="Pod", name="p", namespace=namespace, api_version="v1")
    for i in range(3):
        events.create_namespaced_event(namespace, client.EventsV1Event(
            metadata=client.V1ObjectMeta(name=f"ev-{i}", labels={"testevent-set": "true"}),
            event_time="2026-01-01T00:00:00.000000Z", reporting_controller="skiff.io/test", reporting_instance="test",
            action="Testing", reason="Tested", type="Normal", note=f"note {i}", regarding=regarding))
    # The same events through core/v1, fields renamed as upstream converts them.
    core_event = core.read_namespaced_event("ev-0", namespace)
    assert (core_event.message, core_event.involved_object.name, core_event.reporting_component) == ("note 0", "p", "skiff.io/test")
    listed = core.list_event_for_all_namespaces(label_selector="testevent-set=true")
    assert sorted(e.metadata.name for e in listed.items) == ["ev-0", "ev-1", "ev-2"]
    # Patched through one API, read through the other.
    core.patch_namespaced_event("ev-0", namespace, {"message": "patched"})
    assert events.read_namespaced_event("ev-0", namespace).note == "patched"
    events.patch_namespaced_event("ev-1", namespace, {"note": "patched too"})
    assert core.read_namespaced_event("ev-1", namespace).message == "patched too"
    by_object = core.list_namespaced_event(namespace, field_selector="involvedObject.name=p")
    assert len(by_object.items) == 3
    assert len(events.list_namespaced_event(namespace, field_selector="regarding.name=p").items) == 3
    events.delete_namespaced_event("ev-0", namespace)
    assert len(core.list_namespaced_event(namespace, label_selector="testevent-set=true").items) == 2
    events.delete_collection_namespaced_event(namespace, label_selector="testevent-set=true")
    assert core.list_event_for_all_namespaces(label_selector="testevent-set=true").items == []


def test_kubernetes_service_points_at_the_api_server(api_client, core):
    """[sig-network] EndpointSlice should have Endpoints and EndpointSlices pointing to API Server [Conformance]
    [sig-network] Services should provide secure master service [Conformance]"""
    groups = client.ApisApi(api_client).get_api_versions()
    assert "discovery.k8s.io/v1" in [v.group_version for g in groups.groups if g.name == "discovery.k8s.io" for v in g.versions]
    resources = client.DiscoveryV1Api(api_client).get_api_resources()
    assert "endpointslices" in [r.name for r in resources.resources]
    svc = core.read_namespaced_service("kubernetes", "default")
    port = svc.spec.ports[0].target_port
    # The server listens on loopback, which an endpoint may not be: as
    # upstream, it advertises the host's primary address instead.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        primary = s.getsockname()[0]
    endpoints = core.read_namespaced_endpoints("kubernetes", "default")
    assert [(a.ip, p.port) for s in endpoints.subsets for a in s.addresses for p in s.ports] == [(primary, port)]
    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=kubernetes")
    assert [(s.endpoints[0].addresses, s.ports[0].port) for s in slices.items] == [([primary], port)]


def post_raw(api_client, path, body, validation):
    """POSTs `body` byte for byte (the client would re-encode a JSON body,
    losing the duplicate keys under test); raises ApiException as it does."""
    resp = api_client.rest_client.pool_manager.request(
        "POST", f"{api_client.configuration.host}{path}?fieldValidation={validation}", body=body.encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    if resp.status >= 400:
        raise _api_exception(resp)
    return resp.data, resp.status, resp.headers


def _api_exception(resp):
    e = ApiException(status=resp.status, reason=resp.reason)
    e.body = resp.data
    return e


def test_field_validation_of_a_typed_object(api_client, namespace):
    """[sig-api-machinery] FieldValidation should detect unknown and duplicate fields of a typed object [Conformance]"""
    body = ('{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"dupes"},'
            '"spec":{"replicas":1,"paused":true,"replicas":2,"unknownSpec":1,"selector":{"matchLabels":{"a":"b"}},'
            '"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}')
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    with pytest.raises(ApiException) as e:
        post_raw(api_client, path, body, "Strict")
    assert e.value.status == 400
    message = json.loads(e.value.body)["message"]
    assert 'unknown field "spec.unknownSpec"' in message and 'duplicate field "spec.replicas"' in message, message
    data, _, headers = post_raw(api_client, path, body, "Warn")
    warnings = headers.get("Warning", "")
    assert "spec.unknownSpec" in warnings and "spec.replicas" in warnings, warnings
    assert json.loads(data)["spec"]["replicas"] == 2


GIZMO_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.fv.skiff.io"},
    "spec": {"group": "fv.skiff.io", "scope": "Namespaced",
             "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {
                     "spec": {"type": "object", "properties": {
                         "size": {"type": "integer"},
                         "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                         "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                                      "x-kubernetes-preserve-unknown-fields": True}}}}}}}]},
}


@pytest.fixture
def gizmos(api_client):
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(GIZMO_CRD)
    yield lambda ns: f"/apis/fv.skiff.io/v1/namespaces/{ns}/gizmos"
    ext.delete_custom_resource_definition("gizmos.fv.skiff.io")


def test_field_validation_of_custom_resources(api_client, namespace, gizmos):
    """[sig-api-machinery] FieldValidation should create/apply a valid CR for CRD with validation schema [Conformance]
    [sig-api-machinery] FieldValidation should create/apply an invalid CR with extra properties for CRD with validation schema [Conformance]
    [sig-api-machinery] FieldValidation should detect unknown metadata fields in both the root and embedded object of a CR [Conformance]
    [sig-api-machinery] FieldValidation should detect duplicates in a CR when preserving unknown fields [Conformance]"""
    path = gizmos(namespace)
    def gizmo(name, spec, meta=""):
        return f'{{"apiVersion":"fv.skiff.io/v1","kind":"Gizmo","metadata":{{"name":"{name}"{meta}}},"spec":{spec}}}'
    assert post_raw(api_client, path, gizmo("valid", '{"size":1,"free":{"any":"thing"}}'), "Strict")[1] == 201
    for name, spec, meta, wanted in [
        ("extra", '{"size":1,"extra":true}', "", 'unknown field "spec.extra"'),
        ("meta", '{"size":1,"template":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","bogus":1}}}', ',"unknownMeta":1',
         'unknown field "metadata.unknownMeta"'),
        ("dupes", '{"size":1,"free":{"a":1,"a":2}}', "", 'duplicate field "spec.free.a"'),
    ]:
        with pytest.raises(ApiException) as e:
            post_raw(api_client, path, gizmo(name, spec, meta), "Strict")
        assert e.value.status == 400 and wanted in json.loads(e.value.body)["message"], e.value.body
    with pytest.raises(ApiException) as e:
        post_raw(api_client, path, gizmo("meta2", '{"template":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","bogus":1}}}'), "Strict")
    assert 'unknown field "spec.template.metadata.bogus"' in json.loads(e.value.body)["message"]


def test_field_validation_of_a_schemaless_custom_resource(api_client, namespace):
    """[sig-api-machinery] FieldValidation should create/apply a CR with unknown fields for CRD with no validation schema [Conformance]"""
    ext = client.ApiextensionsV1Api(api_client)
    crd = json.loads(json.dumps(GIZMO_CRD).replace("gizmo", "doodad").replace("Gizmo", "Doodad"))
    crd["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    ext.create_custom_resource_definition(crd)
    body = '{"apiVersion":"fv.skiff.io/v1","kind":"Doodad","metadata":{"name":"d"},"spec":{"anything":{"goes":1}},"top":true}'
    data, status, _ = post_raw(api_client, f"/apis/fv.skiff.io/v1/namespaces/{namespace}/doodads", body, "Strict")
    assert status == 201 and json.loads(data)["top"] is True
    ext.delete_custom_resource_definition("doodads.fv.skiff.io")


def test_eviction_honours_disruption_budgets(api_client, core, namespace):
    policy = client.PolicyV1Api(api_client)
    def pod(name):
        core.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"app": "guarded"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])))
    def evict(name):
        return core.create_namespaced_pod_eviction(name, namespace, client.V1Eviction(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace), delete_options=client.V1DeleteOptions(grace_period_seconds=0)))
    # A pending pod costs its budget nothing.
    pod("pending")
    policy.create_namespaced_pod_disruption_budget(namespace, client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="budget"),
        spec=client.V1PodDisruptionBudgetSpec(min_available=1, selector=client.V1LabelSelector(match_labels={"app": "guarded"}))))
    evict("pending")
    assert status_of(core.read_namespaced_pod, "pending", namespace) == 404
    # A running pod whose budget allows no disruption stays, with upstream's
    # 429. The disruption controller computes the budget's status.
    pod("running")
    ready = [{"type": "Ready", "status": "True"}]
    core.patch_namespaced_pod_status("running", namespace, {"status": {"phase": "Running", "conditions": ready}})
    def budget_reads(healthy, desired, allowed):
        deadline = time.time() + 30
        while time.time() < deadline:
            s = policy.read_namespaced_pod_disruption_budget("budget", namespace).status
            if s and (s.current_healthy, s.desired_healthy, s.disruptions_allowed) == (healthy, desired, allowed):
                return
            time.sleep(0.1)
        raise AssertionError(f"budget status never reached {(healthy, desired, allowed)}: {s}")
    budget_reads(1, 1, 0)
    with pytest.raises(ApiException) as e:
        evict("running")
    assert e.value.status == 429
    body = json.loads(e.value.body)
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"][0]["message"] == "The disruption budget budget needs 1 healthy pods and has 1 currently"
    core.read_namespaced_pod("running", namespace)
    # Once the budget allows one, the eviction deletes the pod and spends it.
    policy.patch_namespaced_pod_disruption_budget("budget", namespace, {"spec": {"minAvailable": 0}})
    budget_reads(1, 0, 1)
    evict("running")
    assert status_of(core.read_namespaced_pod, "running", namespace) == 404
    assert status_of(evict, "gone") == 404


LIFECYCLES = [
    ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema", False,
     {"spec": {"priorityLevelConfiguration": {"name": "global-default"}, "matchingPrecedence": 9000,
               "rules": [{"subjects": [{"kind": "Group", "group": {"name": "e2e"}}],
                          "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"]}]}]}},
     {"spec": {"matchingPrecedence": 9001}}, {"conditions": [{"type": "Dangling", "status": "False", "reason": "Found", "message": "ok"}]}),
    ("flowcontrol.apiserver.k8s.io/v1", "PriorityLevelConfiguration", False,
     {"spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 2, "limitResponse": {"type": "Reject"}}}},
     {"spec": {"limited": {"nominalConcurrencyShares": 3}}}, {"conditions": [{"type": "Test", "status": "True"}]}),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", False,
     {"spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]},
               "validations": [{"expression": "object.spec.replicas <= 100"}]}},
     {"spec": {"failurePolicy": "Ignore"}}, {"observedGeneration": 1}),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", False,
     {"spec": {"policyName": "replica-limit", "validationActions": ["Deny"]}}, {"spec": {"validationActions": ["Warn"]}}, None),
    ("discovery.k8s.io/v1", "EndpointSlice", True,
     {"addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.9"]}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
     {"endpoints": [{"addresses": ["10.42.0.10"]}]}, None),
    ("storage.k8s.io/v1", "CSIStorageCapacity", True, {"storageClassName": "standard", "capacity": "1Gi"}, {"capacity": "2Gi"}, None),
    ("batch/v1", "CronJob", True,
     {"spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
         "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}},
     {"spec": {"suspend": True}}, {"lastScheduleTime": "2026-01-01T00:00:00Z"}),
    ("storage.k8s.io/v1", "VolumeAttachment", False,
     {"spec": {"attacher": "csi.example.com", "nodeName": "node-1", "source": {"persistentVolumeName": "pv-1"}}}, {}, {"attached": True}),
    ("storage.k8s.io/v1", "StorageClass", False, {"provisioner": "csi.example.com", "reclaimPolicy": "Delete"}, {}, None),
    ("storage.k8s.io/v1", "CSIDriver", False, {"spec": {"attachRequired": True, "podInfoOnMount": False}}, {}, None),
    ("v1", "Endpoints", True, {"subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80, "protocol": "TCP"}]}]},
     {"subsets": [{"addresses": [{"ip": "10.42.0.6"}], "ports": [{"port": 8080, "protocol": "TCP"}]}]}, None),
    ("policy/v1", "PodDisruptionBudget", True, {"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}},
     {"spec": {"minAvailable": 2}},
     {"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 1, "expectedPods": 1}),
    # As upstream's test: a load balancer no controller serves, so only the
    # test writes its status (ingress is only allowed on LoadBalancers).
    ("v1", "Service", True, {"spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/internal-vip", "ports": [{"port": 80, "protocol": "TCP"}]}},
     {"spec": {"selector": {"app": "x"}}},
     {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}, "conditions": [{"type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "set", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    ("v1", "ResourceQuota", True, {"spec": {"hard": {"cpu": "1", "memory": "500Mi"}}}, {"spec": {"hard": {"cpu": "2", "memory": "1Gi"}}},
     {"hard": {"cpu": "2", "memory": "1Gi"}, "used": {"cpu": "0", "memory": "0"}}),
    ("v1", "ServiceAccount", True, {}, {"automountServiceAccountToken": False}, None),
]


@pytest.mark.parametrize("api_version,kind,namespaced,body,patch,status", LIFECYCLES, ids=[entry[1] for entry in LIFECYCLES])
def test_api_operations(api_client, namespace, api_version, kind, namespaced, body, patch, status):
    """Discovery, create, get, list here and everywhere, watch, patch,
    update, the status subresource, delete and delete collection, per kind:
    FlowSchema: [sig-api-machinery] API priority and fairness should support FlowSchema API operations [Conformance]
    PriorityLevelConfiguration: [sig-api-machinery] API priority and fairness should support PriorityLevelConfiguration API operations [Conformance]
    ValidatingAdmissionPolicy: [sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should support ValidatingAdmissionPolicy API operations [Conformance]
    ValidatingAdmissionPolicyBinding: [sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should support ValidatingAdmissionPolicyBinding API operations [Conformance]
    EndpointSlice: [sig-network] EndpointSlice should support creating EndpointSlice API operations [Conformance]
    CSIStorageCapacity: [sig-storage] CSIStorageCapacity should support CSIStorageCapacities API operations [Conformance]
    CronJob: [sig-apps] CronJob should support CronJob API operations [Conformance]
    VolumeAttachment: [sig-storage] VolumeAttachment Conformance should run through the lifecycle of a VolumeAttachment [Conformance]
    StorageClass: [sig-storage] StorageClasses CSI Conformance should run through the lifecycle of a StorageClass [Conformance]
    CSIDriver: [sig-storage] CSIInlineVolumes should run through the lifecycle of a CSIDriver [Conformance]
    Endpoints: [sig-network] Services should test the lifecycle of an Endpoint [Conformance]
    PodDisruptionBudget: [sig-apps] DisruptionController should update/patch PodDisruptionBudget status [Conformance]
    PodDisruptionBudget: [sig-apps] DisruptionController Listing PodDisruptionBudgets for all namespaces should list and delete a collection of PodDisruptionBudgets [Conformance]
    Service: [sig-network] Services should complete a service status lifecycle [Conformance]
    ResourceQuota: [sig-api-machinery] ResourceQuota should apply changes to a resourcequota status [Conformance]
    ResourceQuota: [sig-api-machinery] ResourceQuota should be able to update and delete ResourceQuota. [Conformance]
    ServiceAccount: [sig-auth] ServiceAccounts should update a ServiceAccount [Conformance]"""
    lifecycle(api_client, api_version, kind, body, patch, namespace if namespaced else None, status=status)


def test_namespace_status_and_finalizers(core):
    """[sig-api-machinery] Namespaces [Serial] should apply changes to a namespace status [Conformance]
    [sig-api-machinery] Namespaces [Serial] should apply a finalizer to a Namespace [Conformance]"""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="ns-status")))
    assert core.read_namespace_status("ns-status").status.phase == "Active"
    condition = {"type": "StatusUpdate", "status": "True", "reason": "E2E", "message": "patched"}
    patched = core.patch_namespace_status("ns-status", {"status": {"conditions": [condition]}})
    assert [(c.type, c.reason) for c in patched.status.conditions] == [("StatusUpdate", "E2E")]
    current = core.read_namespace_status("ns-status")
    current.status.conditions[0].message = "updated"
    assert core.replace_namespace_status("ns-status", current).status.conditions[0].message == "updated"
    ns = core.read_namespace("ns-status")
    ns.spec.finalizers = ["kubernetes", "e2e.example.com/fake-finalizer"]
    assert core.replace_namespace_finalize("ns-status", ns).spec.finalizers == ["kubernetes", "e2e.example.com/fake-finalizer"]
    ns = core.read_namespace("ns-status")
    ns.spec.finalizers = ["kubernetes"]
    assert core.replace_namespace_finalize("ns-status", ns).spec.finalizers == ["kubernetes"]
    core.delete_namespace("ns-status")


def test_guaranteed_pods_get_their_qos_class(core, namespace):
    """[sig-node] Pods Extended Pods Set QOS Class should be set on Pods with matching resource requests and limits for memory and cpu [Conformance]"""
    resources = client.V1ResourceRequirements(limits={"cpu": "100m", "memory": "100Mi"}, requests={"cpu": "100m", "memory": "100Mi"})
    created = core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name="guaranteed"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox", resources=resources)])))
    assert created.status.qos_class == "Guaranteed"
    assert core.read_namespaced_pod("guaranteed", namespace).status.qos_class == "Guaranteed"


def pv_and_claim(core, namespace, name, labels):
    """A hostPath volume and a claim naming it, as the upstream test makes
    them; the volume binder binds the two."""
    core.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "3M"}, access_modes=["ReadWriteOnce"], storage_class_name="",
            persistent_volume_reclaim_policy="Retain", host_path=client.V1HostPathVolumeSource(path="/tmp/" + name))))
    core.create_namespaced_persistent_volume_claim(namespace, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name="", volume_name=name,
            resources=client.V1VolumeResourceRequirements(requests={"storage": "3M"}))))
    until(lambda: core.read_namespaced_persistent_volume_claim(name, namespace).status.phase == "Bound", "the claim to bind")


def test_persistent_volume_and_claim_lifecycle(core, namespace):
    """[sig-storage] PersistentVolumes CSI Conformance should run through the lifecycle of a PV and a PVC [Conformance]"""
    selector = f"e2e-pv-pool={namespace}"
    pv_and_claim(core, namespace, f"pv-{namespace}", {"e2e-pv-pool": namespace})
    pvs = core.list_persistent_volume(label_selector=selector).items
    assert [p.metadata.name for p in pvs] == [f"pv-{namespace}"]
    assert [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items] == [f"pv-{namespace}"]
    name = f"pv-{namespace}"
    core.patch_persistent_volume(name, {"metadata": {"labels": {name: "patched"}}})
    assert core.read_persistent_volume(name).metadata.labels[name] == "patched"
    core.patch_namespaced_persistent_volume_claim(name, namespace, {"metadata": {"labels": {name: "patched"}}})
    assert core.read_namespaced_persistent_volume_claim(name, namespace).metadata.labels[name] == "patched"
    assert core.read_persistent_volume(name).metadata.uid and core.read_namespaced_persistent_volume_claim(name, namespace).metadata.uid
    core.delete_namespaced_persistent_volume_claim(name, namespace)
    core.delete_persistent_volume(name)
    until(lambda: not core.list_persistent_volume(label_selector=selector).items, "the volume to go")
    assert status_of(core.read_namespaced_persistent_volume_claim, name, namespace) == 404

    # A replacement pair, updated and removed by collection.
    pv_and_claim(core, namespace, name + "-2", {"e2e-pv-pool": namespace})
    volume = core.read_persistent_volume(name + "-2")
    volume.metadata.labels["updated"] = "true"
    assert core.replace_persistent_volume(name + "-2", volume).metadata.labels["updated"] == "true"
    claim = core.read_namespaced_persistent_volume_claim(name + "-2", namespace)
    claim.metadata.labels["updated"] = "true"
    assert core.replace_namespaced_persistent_volume_claim(name + "-2", namespace, claim).metadata.labels["updated"] == "true"
    core.delete_collection_namespaced_persistent_volume_claim(namespace, label_selector=selector)
    core.delete_collection_persistent_volume(label_selector=selector)
    until(lambda: not core.list_persistent_volume(label_selector=selector).items, "the volumes to go")
    assert core.list_namespaced_persistent_volume_claim(namespace, label_selector=selector).items == []


def test_persistent_volume_and_claim_status(core, namespace):
    """[sig-storage] PersistentVolumes CSI Conformance should apply changes to a pv/pvc status [Conformance]"""
    name = f"status-{namespace}"
    pv_and_claim(core, namespace, name, {"e2e-pv-pool": name})
    assert [p.metadata.name for p in core.list_persistent_volume(label_selector=f"e2e-pv-pool={name}").items] == [name]
    assert core.read_namespaced_persistent_volume_claim_status(name, namespace).status.phase in ("Pending", "Bound")
    assert core.read_persistent_volume_status(name).status.phase in ("Available", "Bound")

    condition = {"type": "StatusPatched", "status": "True", "reason": "E2E patchedStatus", "message": "Set from e2e test"}
    patched = core.patch_namespaced_persistent_volume_claim_status(name, namespace, {"status": {"conditions": [condition]}})
    assert [c.type for c in patched.status.conditions] == ["StatusPatched"]
    patched = core.patch_persistent_volume_status(name, {"status": {"reason": "E2E patchStatus", "message": "Set from e2e test"}})
    assert (patched.status.reason, patched.status.message) == ("E2E patchStatus", "Set from e2e test")

    claim = core.read_namespaced_persistent_volume_claim_status(name, namespace)
    claim.status.conditions.append(client.V1PersistentVolumeClaimCondition(type="StatusUpdated", status="True", reason="E2E updateStatus", message="Set from e2e test"))
    updated = core.replace_namespaced_persistent_volume_claim_status(name, namespace, claim)
    assert "StatusUpdated" in [c.type for c in updated.status.conditions]
    volume = core.read_persistent_volume_status(name)
    volume.status.reason, volume.status.message = "E2E updateStatus", "Set from e2e test/updated"
    updated = core.replace_persistent_volume_status(name, volume)
    assert (updated.status.reason, updated.status.message) == ("E2E updateStatus", "Set from e2e test/updated")
    core.delete_namespaced_persistent_volume_claim(name, namespace)
    core.delete_persistent_volume(name)
