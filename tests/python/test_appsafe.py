"""AppSafe's AppGroup through the official Python client (as any client
reaches a kind it has no class for: CustomObjectsApi): a group made for a
Deployment, its mode switched, the NetworkPolicy Protect owns, and the
errors upstream gives for bad input."""
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from waiting import until

GROUP, VERSION, PLURAL = "appsafe.skiff.io", "v1", "appgroups"


def test_a_deployment_gets_a_group_and_protect_owns_a_policy(api_client, namespace):
    labels = {"app": "web"}
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="registry.local/busybox:1")])))))
    groups = client.CustomObjectsApi(api_client)

    def group():
        try:
            return groups.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "web")
        except ApiException as e:
            assert e.status == 404
            return None

    web = until(group, "the group")
    assert web["spec"] == {"mode": "Discover", "selector": {"matchLabels": {"app": "web"}}}
    assert web["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

    groups.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "web", {"spec": {"mode": "Protect"}})
    policies = client.NetworkingV1Api(api_client)
    names = lambda: [p.metadata.name for p in policies.list_namespaced_network_policy(namespace).items]
    until(lambda: names() == ["appsafe-web"], "the group's policy")
    policy = policies.read_namespaced_network_policy("appsafe-web", namespace)
    assert policy.metadata.owner_references[0].kind == "AppGroup"
    assert policy.spec.pod_selector.match_labels == {"app": "web"}
    assert sorted(policy.spec.policy_types) == ["Egress", "Ingress"]
    # Nothing learned: nothing comes in.
    assert not policy.spec.ingress

    groups.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "web", {"spec": {"mode": "Discover"}})
    until(lambda: names() == [], "the policy to go")


@pytest.mark.parametrize("spec,field,reason", [
    ({"mode": "Paranoid", "selector": {}}, "spec.mode", "FieldValueNotSupported"),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}, "spec.selector.matchExpressions[0].operator", "FieldValueInvalid"),
    ({"mode": "Monitor"}, "spec.selector", "FieldValueRequired"),
])
def test_bad_groups_are_refused_as_upstream_refuses(api_client, namespace, spec, field, reason):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AppGroup", "metadata": {"name": "bad"}, "spec": spec}
    with pytest.raises(ApiException) as raised:
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    status = json.loads(raised.value.body)
    assert raised.value.status == 422 and status["reason"] == "Invalid"
    assert [(c["field"], c["reason"]) for c in status["details"]["causes"]] == [(field, reason)]


def test_a_namespace_label_names_the_mode_new_groups_start_in(api_client, core, namespace):
    core.patch_namespace(namespace, {"metadata": {"labels": {"appsafe.skiff.io/mode": "Monitor"}}})
    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name="tool", labels={"run": "tool"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="registry.local/busybox:1")])))
    groups = client.CustomObjectsApi(api_client)
    listed = lambda: groups.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    tool = until(listed, "the pod's own group")[0]
    assert tool["metadata"]["name"] == "tool" and tool["spec"]["mode"] == "Monitor"
    assert tool["spec"]["selector"] == {"matchLabels": {"run": "tool"}}
    assert tool["metadata"]["ownerReferences"][0]["kind"] == "Pod"
