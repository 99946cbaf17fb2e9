"""Validation through the official Python client: every error of an object
in one 422 Status with its causes, quantities refused while decoding (400),
oversized bodies answered with a 413 the client can read, and nothing
written by a refused request."""
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException


def status_of(e):
    return json.loads(e.body)


def deployment(name, replicas=1, selector=None, labels=None, **container):
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector or labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "busybox", **container}]}}},
    }


def test_every_error_of_an_object_comes_in_one_status(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    body = deployment("web", replicas=-3, selector={"app": "other"})
    with pytest.raises(ApiException) as e:
        apps.create_namespaced_deployment(namespace, body)
    s = status_of(e.value)
    assert (e.value.status, s["reason"], s["details"]["kind"], s["details"]["name"]) == (422, "Invalid", "Deployment", "web")
    causes = {(c["field"], c["reason"]) for c in s["details"]["causes"]}
    assert ("spec.replicas", "FieldValueInvalid") in causes, causes
    assert ("spec.template.metadata.labels", "FieldValueInvalid") in causes, causes
    assert s["message"].startswith('Deployment.apps "web" is invalid: ['), s["message"]
    assert "spec.replicas: Invalid value: -3: must be greater than or equal to 0" in s["message"]
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("web", namespace)
    assert e.value.status == 404, "nothing was written"


@pytest.mark.parametrize("field,body", [
    ("spec.containers[1].name", {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "x"}]}),
    ("spec.restartPolicy", {"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "x"}]}),
    ("spec.containers[0].volumeMounts[0].name",
     {"containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "missing", "mountPath": "/data"}]}]}),
    ("spec.containers[0].ports[0].hostPort",
     {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 99999}]}]}),
])
def test_pod_spec_errors_name_their_field(core, namespace, field, body):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": body}
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod(namespace, pod)
    s = status_of(e.value)
    assert e.value.status == 422, s
    assert field in [c["field"] for c in s["details"]["causes"]], s


def test_unparsable_quantity_is_a_bad_request(core, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
           "spec": {"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "lots"}}}]}}
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod(namespace, pod)
    s = status_of(e.value)
    assert (e.value.status, s["reason"]) == (400, "BadRequest"), s
    assert s["message"] == ('Pod in version "v1" cannot be handled as a Pod: quantities must match the regular '
                            "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def test_forbidden_updates_keep_the_stored_object(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web"))
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("web", namespace, {"spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}},
                                                                   "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}}}})
    s = status_of(e.value)
    assert e.value.status == 422, s
    assert [c["field"] for c in s["details"]["causes"]] == ["spec.selector"], s
    assert "field is immutable" in s["details"]["causes"][0]["message"]
    assert apps.read_namespaced_deployment("web", namespace).spec.selector.match_labels == {"app": "web"}


def test_a_body_over_the_limit_gets_a_413_the_client_reads(core, namespace):
    """The server reads and drops what is over the limit before it answers,
    so a client that writes its whole body first still gets the Status."""
    big = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="big"), data={"x": "a" * (5 << 20)})
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, big)
    s = status_of(e.value)
    assert (e.value.status, s["reason"], s["message"]) == (413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("big", namespace)
    assert e.value.status == 404
