"""The official Python `kubernetes` client against Skiff: typed CRUD across
groups, watches with resume, pagination, each patch type, error statuses.
Tests covering an upstream conformance test name its codename."""
import base64
import json
import threading

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def cm(name, data=None, labels=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)


def status_of(exc):
    return json.loads(exc.body)


def deployment(name, replicas=1):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[
                    client.V1Container(name="main", image="registry.local/busybox:1",
                                       env=[client.V1EnvVar(name="A", value="1")])]))))


def test_typed_crud_across_groups(api_client, core, namespace):
    created = core.create_namespaced_config_map(namespace, cm("settings", {"a": "1"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    read = core.read_namespaced_config_map("settings", namespace)
    assert read.data == {"a": "1"}
    read.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("settings", namespace, read)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    secret = core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"), string_data={"user": "admin"}))
    assert secret.type == "Opaque"
    assert base64.b64decode(secret.data["user"]) == b"admin"
    assert secret.string_data is None

    apps = client.AppsV1Api(api_client)
    d = apps.create_namespaced_deployment(namespace, deployment("web", 2))
    assert d.metadata.generation == 1 and d.spec.replicas == 2

    rbac = client.RbacAuthorizationV1Api(api_client)
    role = client.V1Role(metadata=client.V1ObjectMeta(name="reader"),
                         rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])])
    assert rbac.create_namespaced_role(namespace, role).rules[0].verbs == ["get"]
    rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name=f"{namespace}-viewer")))
    assert rbac.read_cluster_role(f"{namespace}-viewer").metadata.name == f"{namespace}-viewer"

    batch = client.BatchV1Api(api_client)
    job = client.V1Job(metadata=client.V1ObjectMeta(name="once"), spec=client.V1JobSpec(
        template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="i")]))))
    assert batch.create_namespaced_job(namespace, job).metadata.name == "once"

    core.delete_namespaced_config_map("settings", namespace)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("settings", namespace)
    assert e.value.status == 404


def test_watch_streams_events_and_resumes(core, namespace):
    """[sig-api-machinery] Watchers should be able to start watching from a specific resource version [Conformance]"""
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, cm("w", {"v": "1"}))
    core.patch_namespaced_config_map("w", namespace, {"data": {"v": "2"}})
    core.delete_namespaced_config_map("w", namespace)

    events = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=5):
        if ev["object"].metadata.name == "kube-root-ca.crt":
            continue  # the controller manager's, in every namespace
        events.append((ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("v"),
                       ev["object"].metadata.resource_version))
        if len(events) == 3:
            w.stop()
    assert [e[:3] for e in events] == [("ADDED", "w", "1"), ("MODIFIED", "w", "2"), ("DELETED", "w", "2")]

    # Resuming from the MODIFIED event's version delivers only what followed it.
    resumed = []
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=events[1][3], timeout_seconds=5):
        if ev["object"].metadata.name == "kube-root-ca.crt":
            continue  # the controller manager's, in every namespace
        resumed.append(ev["type"])
        w.stop()
    assert resumed == ["DELETED"]


def test_watch_with_selector_reports_objects_leaving_it(core, namespace):
    """[sig-api-machinery] Watchers should observe an object deletion if it stops meeting the requirements of the selector [Conformance]"""
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, cm("sel", labels={"watch": "yes"}))
    core.patch_namespaced_config_map("sel", namespace, {"metadata": {"labels": {"watch": "no"}}})
    core.patch_namespaced_config_map("sel", namespace, {"metadata": {"labels": {"watch": "yes"}}})
    seen = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, namespace, label_selector="watch=yes",
                       resource_version=start, timeout_seconds=5):
        seen.append(ev["type"])
        if len(seen) == 3:
            w.stop()
    assert seen == ["ADDED", "DELETED", "ADDED"]


def test_concurrent_watches_see_the_same_order(core, namespace):
    """[sig-api-machinery] Watchers should receive events on concurrent watches in same order [Conformance]"""
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    results = [[], [], []]

    def watcher(out):
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=10):
            out.append(ev["object"].metadata.resource_version)
            if len(out) == 20:
                w.stop()

    threads = [threading.Thread(target=watcher, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for i in range(20):
        core.create_namespaced_config_map(namespace, cm(f"o{i}"))
    for t in threads:
        t.join(15)
    assert len(results[0]) == 20
    assert results[0] == results[1] == results[2]


def test_pagination(core, namespace):
    """[sig-api-machinery] Servers with support for API chunking should return chunks of results for list calls [Conformance]"""
    # Secrets: no controller adds any to a namespace (ConfigMaps get kube-root-ca.crt).
    for i in range(30):
        core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=f"page-{i:02d}")))
    names, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_secret(namespace, limit=8, _continue=token)
        pages += 1
        names += [o.metadata.name for o in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 30 - len(names)
    assert pages == 4
    assert names == sorted(f"page-{i:02d}" for i in range(30))


def test_list_resource_version_semantics(core, namespace):
    """Lists come from the watch cache: a consistent list (no resourceVersion)
    sees every acknowledged write, "0" and NotOlderThan serve no older than
    asked, Exact reads the past, and the impossible are refused as upstream."""
    first = core.create_namespaced_config_map(namespace, cm("rv-a", {"v": "1"}))
    # Written elsewhere: the cache learns of it only through progress.
    core.create_namespaced_config_map("default", cm(f"rv-elsewhere-{namespace}"))
    try:
        listed = core.list_namespaced_config_map(namespace)
        latest = core.read_namespaced_config_map(f"rv-elsewhere-{namespace}", "default").metadata.resource_version
        assert int(listed.metadata.resource_version) >= int(latest)
    finally:
        core.delete_namespaced_config_map(f"rv-elsewhere-{namespace}", "default")
    core.patch_namespaced_config_map("rv-a", namespace, {"data": {"v": "2"}})

    names = lambda l: [o.metadata.name for o in l.items if o.metadata.name != "kube-root-ca.crt"]
    assert names(core.list_namespaced_config_map(namespace, resource_version="0")) == ["rv-a"]
    newer = core.list_namespaced_config_map(namespace, resource_version=first.metadata.resource_version,
                                            resource_version_match="NotOlderThan")
    by_name = lambda l: {o.metadata.name: o for o in l.items}
    assert by_name(newer)["rv-a"].data == {"v": "2"}
    past = core.list_namespaced_config_map(namespace, resource_version=first.metadata.resource_version,
                                           resource_version_match="Exact")
    assert past.metadata.resource_version == first.metadata.resource_version
    assert by_name(past)["rv-a"].data == {"v": "1"}

    future = str(int(listed.metadata.resource_version) + 1_000_000)
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(namespace, resource_version=future)
    s = status_of(e.value)
    assert (e.value.status, s["reason"]) == (504, "Timeout")
    assert s["message"].startswith(f"Too large resource version: {future}, current: ")
    assert s["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    assert s["details"]["retryAfterSeconds"] == 1

    for rv, match, why in [("0", "Exact", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
                           ("", "NotOlderThan", "resourceVersionMatch is forbidden unless resourceVersion is provided")]:
        with pytest.raises(ApiException) as e:
            core.list_namespaced_config_map(namespace, resource_version=rv, resource_version_match=match)
        s = status_of(e.value)
        assert (e.value.status, s["reason"]) == (422, "Invalid")
        assert s["message"] == f'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: {why}'


def test_each_patch_type(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("p"))

    # Strategic merge: containers merge by name, env by name.
    body = {"spec": {"template": {"spec": {"containers": [{"name": "main", "env": [{"name": "B", "value": "2"}]}]}}}}
    # The client sends a dict as a strategic merge patch, a list as a JSON patch.
    d = apps.patch_namespaced_deployment("p", namespace, body)
    env = d.spec.template.spec.containers[0].env
    assert [(e.name, e.value) for e in env] == [("A", "1"), ("B", "2")]
    assert d.spec.template.spec.containers[0].image == "registry.local/busybox:1"

    # Merge patch: lists are replaced.
    body = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "other:2"}]}}}}
    d = api_client.call_api(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/p", "PATCH", body=body,
        header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
        response_type="V1Deployment", auth_settings=["BearerToken"], _return_http_data_only=True)
    assert d.spec.template.spec.containers[0].env is None

    # JSON patch.
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 4}]
    d = apps.patch_namespaced_deployment("p", namespace, ops)
    assert d.spec.replicas == 4
    assert d.metadata.generation == 4


def test_error_statuses(core, namespace):
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("absent", namespace)
    s = status_of(e.value)
    assert (e.value.status, s["reason"], s["message"]) == (404, "NotFound", 'configmaps "absent" not found')
    assert s["details"] == {"name": "absent", "kind": "configmaps"}

    core.create_namespaced_config_map(namespace, cm("dup"))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, cm("dup"))
    assert (e.value.status, status_of(e.value)["reason"]) == (409, "AlreadyExists")

    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, cm("Upper"))
    s = status_of(e.value)
    assert (e.value.status, s["reason"]) == (422, "Invalid")
    assert s["details"]["causes"][0]["field"] == "metadata.name"

    stale = core.read_namespaced_config_map("dup", namespace)
    core.patch_namespaced_config_map("dup", namespace, {"data": {"x": "1"}})
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("dup", namespace, stale)
    assert (e.value.status, status_of(e.value)["reason"]) == (409, "Conflict")
    # A resourceVersion in a patch is a precondition too.
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("dup", namespace, {"metadata": {"resourceVersion": stale.metadata.resource_version},
                                                            "data": {"x": "2"}})
    assert (e.value.status, status_of(e.value)["reason"]) == (409, "Conflict")
    current = core.read_namespaced_config_map("dup", namespace).metadata.resource_version
    core.patch_namespaced_config_map("dup", namespace, {"metadata": {"resourceVersion": current}, "data": {"x": "2"}})

    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(namespace, label_selector="a in b")
    assert e.value.status == 400

    with pytest.raises(ApiException) as e:
        core.list_namespaced_pod(namespace, field_selector="spec.unknownField=x")
    assert e.value.status == 400
    assert "field label not supported: spec.unknownField" in status_of(e.value)["message"]


def test_namespace_lifecycle(core):
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="short-lived")))
    ns = core.read_namespace("short-lived")
    assert ns.status.phase == "Active"
    assert ns.spec.finalizers == ["kubernetes"]
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "short-lived"
    core.create_namespaced_config_map("short-lived", cm("inside"))
    core.delete_namespace("short-lived")
    import time
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            core.read_namespace("short-lived")
        except ApiException as e:
            assert e.status == 404
            break
        time.sleep(0.2)
    else:
        pytest.fail("the namespace was not deleted")


def test_openapi_documents_are_valid(api_client):
    """/openapi/v2 (Swagger 2.0, all kinds) and every /openapi/v3 group version
    document pass a validator of the OpenAPI specifications."""
    from openapi_spec_validator.validation import OpenAPIV2SpecValidator, OpenAPIV30SpecValidator

    def get(path, accept="application/json"):
        resp = api_client.call_api(path, "GET", header_params={"Accept": accept},
                                   auth_settings=["BearerToken"], _preload_content=False)
        return json.loads(resp[0].data)

    v2 = get("/openapi/v2")
    assert list(OpenAPIV2SpecValidator(v2).iter_errors()) == []
    pods = v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]
    assert pods["get"]["operationId"] == "readCoreV1NamespacedPod"
    assert pods["get"]["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["allOf"] == \
        [{"$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"}]
    for gv, doc in get("/openapi/v3")["paths"].items():
        assert list(OpenAPIV30SpecValidator(get(doc["serverRelativeURL"])).iter_errors()) == [], gv
    # The protobuf form kubectl asks for (gnostic's Document), and 406 for a form not served.
    resp = api_client.call_api("/openapi/v2", "GET", auth_settings=["BearerToken"], _preload_content=False,
                               header_params={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert resp[0].headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert resp[0].data[:5] == b"\x0a\x032.0"
    with pytest.raises(ApiException) as e:
        get("/openapi/v2", "application/xml")
    assert e.value.status == 406


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_raw_aggregated_discovery_accept_headers(api_client, version):
    """[sig-api-machinery] AggregatedDiscovery should support raw aggregated discovery endpoint Accept headers [Conformance]"""
    media = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    seen = set()
    for path in ("/api", "/apis"):
        resp = api_client.call_api(path, "GET", header_params={"Accept": media + ",application/json"},
                                   auth_settings=["BearerToken"], _preload_content=False)
        assert resp[0].headers["Content-Type"] == media
        doc = json.loads(resp[0].data)
        assert doc["kind"] == "APIGroupDiscoveryList"
        assert doc["apiVersion"] == f"apidiscovery.k8s.io/{version}"
        for group in doc["items"]:
            for v in group["versions"]:
                for r in v["resources"]:
                    seen.add((group["metadata"]["name"], v["version"], r["resource"]))
    # Every built-in resource the legacy documents list is here too.
    legacy = set()
    for gv in ["v1"] + [g["preferredVersion"]["groupVersion"] for g in json.loads(api_client.call_api(
            "/apis", "GET", auth_settings=["BearerToken"], _preload_content=False)[0].data)["groups"]]:
        path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        doc = json.loads(api_client.call_api(path, "GET", auth_settings=["BearerToken"], _preload_content=False)[0].data)
        group, _, version = gv.rpartition("/")
        legacy |= {(group, version, r["name"]) for r in doc["resources"] if "/" not in r["name"]}
    assert legacy and legacy <= seen


def test_aggregated_discovery_interface(api_client):
    """[sig-api-machinery] AggregatedDiscovery should support aggregated discovery interface [Conformance]"""
    from kubernetes import dynamic
    dyn = dynamic.DynamicClient(api_client)
    for api_version, kind in [("v1", "Pod"), ("apps/v1", "Deployment"), ("batch/v1", "CronJob"),
                              ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("storage.k8s.io/v1", "StorageClass")]:
        assert dyn.resources.get(api_version=api_version, kind=kind).kind == kind


def _crd_for_discovery(api_client, group):
    """A namespaced CRD `noxus.{group}` (kind Noxu), and a function that deletes it."""
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"noxus.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "noxus", "singular": "noxu", "kind": "Noxu", "listKind": "NoxuList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    })
    return lambda: ext.delete_custom_resource_definition(f"noxus.{group}")


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_raw_aggregated_discovery_lists_a_crd(api_client, version):
    """[sig-api-machinery] AggregatedDiscovery should support raw aggregated discovery request for CRDs [Conformance]"""
    from waiting import until
    group = f"raw-{version}.discovery.skiff.io"
    delete = _crd_for_discovery(api_client, group)
    media = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"

    def listed():
        resp = api_client.call_api("/apis", "GET", header_params={"Accept": media + ",application/json"},
                                   auth_settings=["BearerToken"], _preload_content=False)
        assert resp[0].headers["Content-Type"] == media
        doc = json.loads(resp[0].data)
        return next((g for g in doc["items"] if g["metadata"]["name"] == group), None)
    found = until(listed, "the CRD's group in aggregated discovery")
    [v1] = found["versions"]
    assert v1["version"] == "v1"
    [noxus] = v1["resources"]
    assert (noxus["resource"], noxus["scope"], noxus["singularResource"]) == ("noxus", "Namespaced", "noxu")
    assert noxus["responseKind"] == {"group": group, "version": "v1", "kind": "Noxu"}
    delete()
    until(lambda: listed() is None, "the CRD's group to leave aggregated discovery")


def test_aggregated_discovery_interface_finds_a_crd(api_client):
    """[sig-api-machinery] AggregatedDiscovery should support aggregated discovery interface for CRDs [Conformance]"""
    from kubernetes import dynamic
    from waiting import until
    group = "interface.discovery.skiff.io"
    delete = _crd_for_discovery(api_client, group)

    def found():
        try:
            return dynamic.DynamicClient(api_client).resources.get(api_version=f"{group}/v1", kind="Noxu")
        except dynamic.exceptions.ResourceNotFoundError:
            return None
    noxus = until(found, "the CRD's kind through the discovery client")
    assert (noxus.name, noxus.namespaced, noxus.group_version) == ("noxus", True, f"{group}/v1")
    delete()


def test_table_of_a_review_is_not_acceptable(api_client):
    """[sig-api-machinery] Servers with support for Table transformation should return a 406 for a backend which does not implement metadata [Conformance]"""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}}
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    with pytest.raises(ApiException) as e:
        api_client.call_api(path, "POST", body=review, header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io", "Content-Type": "application/json"},
                            auth_settings=["BearerToken"], _preload_content=False)
    assert e.value.status == 406
    assert json.loads(e.value.body)["reason"] == "NotAcceptable"
    # With plain JSON as a fallback, the review is answered.
    resp = api_client.call_api(path, "POST", body=review, header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", "Content-Type": "application/json"},
                               auth_settings=["BearerToken"], _preload_content=False)
    assert resp[1] == 201 and json.loads(resp[0].data)["status"]["allowed"] is True


def test_yaml_bodies_and_unknown_media_types(api_client, namespace):
    yaml_body = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n  namespace: {namespace}\ndata:\n  k: v\n"
    resp = api_client.call_api(f"/api/v1/namespaces/{namespace}/configmaps", "POST", body=yaml_body,
                               header_params={"Content-Type": "application/yaml", "Accept": "application/json"},
                               auth_settings=["BearerToken"], _preload_content=False)
    assert resp[1] == 201
    assert json.loads(resp[0].data)["data"] == {"k": "v"}
    def refused(body, content_type):
        with pytest.raises(ApiException) as e:
            api_client.call_api(f"/api/v1/namespaces/{namespace}/configmaps", "POST", body=body,
                                header_params={"Content-Type": content_type},
                                auth_settings=["BearerToken"], _preload_content=False)
        return e.value.status, json.loads(e.value.body)["reason"]
    assert refused("k8s\x00\x0a\xff", "application/vnd.kubernetes.protobuf") == (400, "BadRequest")
    assert refused("{}", "application/cbor") == (415, "UnsupportedMediaType")


def test_pod_binding_assigns_a_node_once(core, namespace):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="bindme"),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="i")]))
    core.create_namespaced_pod(namespace, pod)
    binding = client.V1Binding(metadata=client.V1ObjectMeta(name="bindme"),
                               target=client.V1ObjectReference(kind="Node", name="node-1"))
    # The client cannot parse the Status a binding returns (as with upstream), so read it raw.
    resp = core.create_namespaced_pod_binding("bindme", namespace, binding, _preload_content=False)
    assert resp.status == 201
    bound = core.read_namespaced_pod("bindme", namespace)
    assert bound.spec.node_name == "node-1"
    assert [(c.type, c.status) for c in bound.status.conditions] == [("PodScheduled", "True")]
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod_binding("bindme", namespace, binding, _preload_content=False)
    assert e.value.status == 409
    assert 'already assigned to node "node-1"' in json.loads(e.value.body)["message"]


def test_namespace_finalize_subresource(core):
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="fin")))
    ns = core.read_namespace("fin")
    ns.spec.finalizers = []
    done = core.replace_namespace_finalize("fin", ns)
    assert not done.spec.finalizers


def test_namespace_spec_finalizers_change_only_through_finalize(core):
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="keep-fin")))
    ns = core.read_namespace("keep-fin")
    ns.spec.finalizers = []
    assert core.replace_namespace("keep-fin", ns).spec.finalizers == ["kubernetes"]


def test_a_body_of_another_kind_is_refused(core, namespace):
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, {"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert e.value.status == 400
    assert "does not match the expected API version (v1)" in json.loads(e.value.body)["message"]


def test_dynamic_client_on_a_custom_resource(api_client, namespace):
    """[sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] Simple CustomResourceDefinition listing custom resource definition objects works [Conformance]"""
    from kubernetes import dynamic
    ext = client.ApiextensionsV1Api(api_client)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.test.skiff.io"},
        "spec": {"group": "test.skiff.io", "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {"level": {"type": "integer", "default": 1}}}}}}}]},
    }
    ext.create_custom_resource_definition(crd)
    listed = ext.list_custom_resource_definition()
    assert "gadgets.test.skiff.io" in [c.metadata.name for c in listed.items]
    got = ext.read_custom_resource_definition("gadgets.test.skiff.io")
    assert {c.type: c.status for c in got.status.conditions}["Established"] == "True"

    dyn = dynamic.DynamicClient(api_client)
    gadgets = dyn.resources.get(api_version="test.skiff.io/v1", kind="Gadget")
    gadgets.create(body={"apiVersion": "test.skiff.io/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {}}, namespace=namespace)
    g = gadgets.get(name="g1", namespace=namespace)
    assert g.spec.level == 1
    gadgets.patch(name="g1", namespace=namespace, body={"spec": {"level": 5}}, content_type="application/merge-patch+json")
    assert [i.spec.level for i in gadgets.get(namespace=namespace).items] == [5]
    with pytest.raises(ApiException) as e:
        gadgets.create(body={"apiVersion": "test.skiff.io/v1", "kind": "Gadget", "metadata": {"name": "g2"},
                             "spec": {"level": "high"}}, namespace=namespace)
    assert e.value.status == 422
    gadgets.delete(name="g1", namespace=namespace)
    assert gadgets.get(namespace=namespace).items == []
    ext.delete_custom_resource_definition("gadgets.test.skiff.io")


def test_certificate_signing_request_operations(api_client):
    """[sig-auth] Certificates API [Privileged:ClusterAdmin] should support CSR API operations [Conformance]

    Discovery, then every verb on certificatesigningrequests and on its
    approval and status subresources, with a signer no controller acts on."""
    import subprocess
    import uuid
    certs = client.CertificatesV1Api(api_client)
    groups = client.ApisApi(api_client).get_api_versions().groups
    assert any(g.name == "certificates.k8s.io" and any(v.group_version == "certificates.k8s.io/v1" for v in g.versions) for g in groups)
    resources = {r.name: r.verbs for r in certs.get_api_resources().resources}
    assert set(resources["certificatesigningrequests"]) >= {"create", "get", "list", "watch", "update", "patch", "delete", "deletecollection"}
    assert set(resources["certificatesigningrequests/approval"]) >= {"get", "update", "patch"}
    assert set(resources["certificatesigningrequests/status"]) >= {"get", "update", "patch"}

    pem = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-subj", "/CN=e2e.example.com", "-keyout", "/dev/null"], check=True, capture_output=True).stdout
    signer = f"example.com/e2e-{uuid.uuid4().hex[:8]}"
    label = {"e2e-run": signer.rsplit("-", 1)[1]}

    def new_csr():
        return client.V1CertificateSigningRequest(
            metadata=client.V1ObjectMeta(generate_name="e2e-example-csr-", labels=label),
            spec=client.V1CertificateSigningRequestSpec(
                request=base64.b64encode(pem).decode(), signer_name=signer,
                usages=["digital signature", "key encipherment", "client auth"]))

    created = certs.create_certificate_signing_request(new_csr())
    name = created.metadata.name
    assert created.spec.username == "skiff-admin", "the requester is recorded by the server"
    assert "system:masters" in created.spec.groups
    certs.create_certificate_signing_request(new_csr())
    assert certs.read_certificate_signing_request(name).spec.signer_name == signer
    listed = certs.list_certificate_signing_request(label_selector=f"e2e-run={label['e2e-run']}")
    assert len(listed.items) == 2

    w = watch.Watch()
    seen = []
    stream = w.stream(certs.list_certificate_signing_request, field_selector=f"metadata.name={name}",
                      resource_version=listed.metadata.resource_version, timeout_seconds=5)
    patched = certs.patch_certificate_signing_request(name, {"metadata": {"annotations": {"patched": "true"}}})
    assert patched.metadata.annotations["patched"] == "true"
    for event in stream:
        seen.append((event["type"], event["object"].metadata.annotations))
        break
    w.stop()
    assert seen and seen[0][0] == "MODIFIED" and seen[0][1]["patched"] == "true"
    updated = certs.read_certificate_signing_request(name)
    updated.metadata.annotations["updated"] = "true"
    assert certs.replace_certificate_signing_request(name, updated).metadata.annotations["updated"] == "true"

    # Approval: its own subresource, which changes the conditions alone.
    approval = certs.read_certificate_signing_request_approval(name)
    approval.status = client.V1CertificateSigningRequestStatus(conditions=[client.V1CertificateSigningRequestCondition(
        type="Approved", status="True", reason="E2E", message="Set from an e2e test")])
    approval.spec.signer_name = "example.com/changed"
    approved = certs.replace_certificate_signing_request_approval(name, approval)
    assert [c.type for c in approved.status.conditions] == ["Approved"]
    assert approved.spec.signer_name == signer, "approval changes no spec"
    patched = certs.patch_certificate_signing_request_approval(name, {"status": {"conditions": [
        {"type": "Approved", "status": "True", "reason": "E2E", "message": "Patched"}]}})
    assert patched.status.conditions[0].message == "Patched"

    # Status: the signer's, where the certificate goes.
    status = certs.read_certificate_signing_request_status(name)
    status.status.conditions.append(client.V1CertificateSigningRequestCondition(
        type="StatusUpdate", status="True", reason="E2E", message="Set from an e2e test"))
    assert any(c.type == "StatusUpdate" for c in certs.replace_certificate_signing_request_status(name, status).status.conditions)
    patched = certs.patch_certificate_signing_request_status(name, {"metadata": {"annotations": {"patchedstatus": "true"}}})
    assert patched.metadata.annotations.get("patchedstatus") != "true", "status changes no metadata"

    certs.delete_certificate_signing_request(name)
    with pytest.raises(ApiException) as e:
        certs.read_certificate_signing_request(name)
    assert e.value.status == 404
    certs.delete_collection_certificate_signing_request(label_selector=f"e2e-run={label['e2e-run']}")
    assert certs.list_certificate_signing_request(label_selector=f"e2e-run={label['e2e-run']}").items == []
