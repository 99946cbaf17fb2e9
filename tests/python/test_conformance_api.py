"""Upstream conformance tests of quotas, garbage collection, service
accounts, apps controllers, admission policies and custom resource
definitions, each following the steps of the upstream test named in its
docstring (through the official Python client)."""

import json
import queue
import threading
import time

from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from waiting import until


def gone(read, *args):
    try:
        read(*args)
        return False
    except ApiException as e:
        if e.status == 404:
            return True
        raise


class Events:
    """A watch running in the background from `resource_version`, its
    events queued as they come."""

    def __init__(self, list_fn, *args, **kwargs):
        self.queue = queue.Queue()
        self.watch = watch.Watch()

        def run():
            try:
                for event in self.watch.stream(list_fn, *args, timeout_seconds=120, **kwargs):
                    self.queue.put(event)
            except Exception as e:  # surfaced to the test by next()
                self.queue.put({"type": "EXCEPTION", "object": e})
        threading.Thread(target=run, daemon=True).start()

    def next(self, timeout=15):
        try:
            event = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no watch event came") from None
        assert event["type"] != "EXCEPTION", event["object"]
        return event

    def expect(self, kind, timeout=15):
        """The next event, which must be of type `kind`."""
        event = self.next(timeout)
        assert event["type"] == kind, (event["type"], kind)
        return event

    def expect_none(self, wait=1.0):
        try:
            event = self.queue.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected watch event {event['type']}")

    def stop(self):
        self.watch.stop()


def pod_body(name, resources=None, active_deadline=None):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            termination_grace_period_seconds=0, active_deadline_seconds=active_deadline,
            containers=[client.V1Container(name="pause", image="registry.k8s.io/pause:3.9",
                                           resources=resources)]))


def rc_body(name, replicas, labels):
    return client.V1ReplicationController(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ReplicationControllerSpec(
            replicas=replicas, selector=labels,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(termination_grace_period_seconds=0, containers=[
                    client.V1Container(name="nginx", image="registry.k8s.io/nginx-slim:0.20")]))))


# ---------------------------------------------------------------- ResourceQuota

def quota_body(name, **hard):
    """Upstream's newTestResourceQuota: counts and compute of every kind."""
    base = {"pods": "5", "services": "10", "services.nodeports": "1", "services.loadbalancers": "1",
            "replicationcontrollers": "10", "resourcequotas": "1", "cpu": "1", "memory": "500Mi",
            "configmaps": "10", "secrets": "10", "persistentvolumeclaims": "10", "requests.storage": "10Gi",
            "requests.ephemeral-storage": "50Gi", "count/replicasets.apps": "5"}
    base.update(hard)
    return client.V1ResourceQuota(metadata=client.V1ObjectMeta(name=name),
                                  spec=client.V1ResourceQuotaSpec(hard=base))


def wait_for_used(core, namespace, name, used, timeout=30):
    """Waits until the quota's status.used holds `used` (as quantities)."""
    def matches():
        status = core.read_namespaced_resource_quota(name, namespace).status
        have = (status and status.used) or {}
        return all(k in have and parse_quantity(have[k]) == parse_quantity(v) for k, v in used.items())
    try:
        until(matches, f"quota {name} to report used {used}", timeout)
    except AssertionError:
        status = core.read_namespaced_resource_quota(name, namespace).status
        raise AssertionError(f"quota {name}: wanted used {used}, have {status and status.used}")


def stable_count(list_fn, namespace):
    """The number of objects once it stops changing (upstream waits for the
    count to hold for five polls)."""
    found, unchanged = -1, 0
    deadline = time.time() + 30
    while time.time() < deadline:
        n = len(list_fn(namespace).items)
        if n == found:
            unchanged += 1
            if unchanged > 4:
                return n
        else:
            found, unchanged = n, 0
        time.sleep(0.2)
    return found


def test_resource_quota_captures_the_life_of_a_configmap(core, namespace):
    """[sig-api-machinery] ResourceQuota should create a ResourceQuota and capture the life of a configMap. [Conformance]"""
    found = stable_count(core.list_namespaced_config_map, namespace)
    core.create_namespaced_resource_quota(namespace, quota_body("test-quota", configmaps=str(found + 1)))
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "configmaps": str(found)})
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="test-configmap"), data={"a": "b"}))
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "configmaps": str(found + 1)})
    core.delete_namespaced_config_map("test-configmap", namespace)
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "configmaps": str(found)})


def test_resource_quota_captures_the_life_of_a_secret(core, namespace):
    """[sig-api-machinery] ResourceQuota should create a ResourceQuota and capture the life of a secret. [Conformance]"""
    found = stable_count(core.list_namespaced_secret, namespace)
    core.create_namespaced_resource_quota(namespace, quota_body("test-quota", secrets=str(found + 1)))
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "secrets": str(found)})
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="test-secret"), data={"data-1": "dmFsdWUtMQo="}))
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "secrets": str(found + 1)})
    core.delete_namespaced_secret("test-secret", namespace)
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "secrets": str(found)})


def test_resource_quota_captures_the_life_of_a_replication_controller(core, namespace):
    """[sig-api-machinery] ResourceQuota should create a ResourceQuota and capture the life of a replication controller. [Conformance]"""
    core.create_namespaced_resource_quota(namespace, quota_body("test-quota"))
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "replicationcontrollers": "0"})
    core.create_namespaced_replication_controller(namespace, rc_body("test-rc", 0, {"name": "nginx"}))
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "replicationcontrollers": "1"})
    core.delete_namespaced_replication_controller("test-rc", namespace, propagation_policy="Background")
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "replicationcontrollers": "0"})


def test_resource_quota_captures_the_life_of_a_replica_set(api_client, core, namespace):
    """[sig-api-machinery] ResourceQuota should create a ResourceQuota and capture the life of a replica set. [Conformance]"""
    apps = client.AppsV1Api(api_client)
    core.create_namespaced_resource_quota(namespace, quota_body("test-quota"))
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "count/replicasets.apps": "0"})
    labels = {"name": "nginx"}
    apps.create_namespaced_replica_set(namespace, client.V1ReplicaSet(
        metadata=client.V1ObjectMeta(name="test-rs"),
        spec=client.V1ReplicaSetSpec(
            replicas=0, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image="nginx")])))))
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "count/replicasets.apps": "1"})
    apps.delete_namespaced_replica_set("test-rs", namespace, propagation_policy="Background")
    wait_for_used(core, namespace, "test-quota", {"resourcequotas": "1", "count/replicasets.apps": "0"})


def test_resource_quota_lifecycle(core, namespace):
    """[sig-api-machinery] ResourceQuota should manage the lifecycle of a ResourceQuota [Conformance]"""
    label = {"e2e-rq-label": namespace}
    core.create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="e2e-quota", labels=label),
        spec=client.V1ResourceQuotaSpec(hard={"cpu": "1", "memory": "500Mi"})))
    listed = core.list_resource_quota_for_all_namespaces(label_selector=f"e2e-rq-label={namespace}")
    assert [(q.metadata.namespace, q.metadata.name) for q in listed.items] == [(namespace, "e2e-quota")]
    patched = core.patch_namespaced_resource_quota("e2e-quota", namespace, {
        "metadata": {"labels": {"e2e-rq-label": namespace, "rq": "patched"}},
        "spec": {"hard": {"cpu": "1", "memory": "750Mi"}}})
    assert patched.metadata.labels["rq"] == "patched"
    assert parse_quantity(patched.spec.hard["memory"]) == parse_quantity("750Mi")
    assert parse_quantity(patched.spec.hard["cpu"]) == parse_quantity("1")
    got = core.read_namespaced_resource_quota("e2e-quota", namespace)
    assert got.metadata.labels["rq"] == "patched"
    assert parse_quantity(got.spec.hard["memory"]) == parse_quantity("750Mi")
    core.delete_collection_namespaced_resource_quota(namespace, label_selector=f"e2e-rq-label={namespace}")
    until(lambda: core.list_namespaced_resource_quota(namespace, label_selector=f"e2e-rq-label={namespace}").items == [],
          "the quota to be deleted by collection")


def test_resource_quota_best_effort_scope(core, namespace):
    """[sig-api-machinery] ResourceQuota should verify ResourceQuota with best effort scope. [Conformance]"""
    core.create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="quota-besteffort"),
        spec=client.V1ResourceQuotaSpec(hard={"pods": "5"}, scopes=["BestEffort"])))
    core.create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="quota-not-besteffort"),
        spec=client.V1ResourceQuotaSpec(hard={"pods": "5", "requests.cpu": "1", "requests.memory": "500Mi",
                                              "limits.cpu": "2", "limits.memory": "1Gi"},
                                        scopes=["NotBestEffort"])))
    wait_for_used(core, namespace, "quota-besteffort", {"pods": "0"})
    wait_for_used(core, namespace, "quota-not-besteffort", {"pods": "0"})
    # A best-effort pod counts against the BestEffort quota only.
    core.create_namespaced_pod(namespace, pod_body("besteffort"))
    wait_for_used(core, namespace, "quota-besteffort", {"pods": "1"})
    wait_for_used(core, namespace, "quota-not-besteffort", {"pods": "0"})
    core.delete_namespaced_pod("besteffort", namespace, grace_period_seconds=0)
    wait_for_used(core, namespace, "quota-besteffort", {"pods": "0"})
    # A pod with requests and limits counts against the NotBestEffort quota only.
    resources = client.V1ResourceRequirements(requests={"cpu": "500m", "memory": "200Mi"},
                                              limits={"cpu": "1", "memory": "400Mi"})
    core.create_namespaced_pod(namespace, pod_body("not-besteffort", resources=resources))
    wait_for_used(core, namespace, "quota-not-besteffort", {"pods": "1"})
    wait_for_used(core, namespace, "quota-besteffort", {"pods": "0"})
    core.delete_namespaced_pod("not-besteffort", namespace, grace_period_seconds=0)
    wait_for_used(core, namespace, "quota-not-besteffort", {"pods": "0"})


def test_resource_quota_terminating_scopes(core, namespace):
    """[sig-api-machinery] ResourceQuota should verify ResourceQuota with terminating scopes. [Conformance]"""
    hard = {"pods": "5", "requests.cpu": "1", "requests.memory": "500Mi", "limits.cpu": "2", "limits.memory": "1Gi"}
    zero = {k: "0" for k in hard}
    for name, scope in (("quota-terminating", "Terminating"), ("quota-not-terminating", "NotTerminating")):
        core.create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name=name), spec=client.V1ResourceQuotaSpec(hard=hard, scopes=[scope])))
        wait_for_used(core, namespace, name, zero)
    resources = client.V1ResourceRequirements(requests={"cpu": "500m", "memory": "200Mi"},
                                              limits={"cpu": "1", "memory": "400Mi"})
    used = {"pods": "1", "requests.cpu": "500m", "requests.memory": "200Mi", "limits.cpu": "1", "limits.memory": "400Mi"}
    # A long-running pod counts against the NotTerminating quota only.
    core.create_namespaced_pod(namespace, pod_body("test-pod", resources=resources))
    wait_for_used(core, namespace, "quota-not-terminating", used)
    wait_for_used(core, namespace, "quota-terminating", zero)
    core.delete_namespaced_pod("test-pod", namespace, grace_period_seconds=0)
    wait_for_used(core, namespace, "quota-not-terminating", zero)
    # A pod with an active deadline counts against the Terminating quota only.
    core.create_namespaced_pod(namespace, pod_body("terminating-pod", resources=resources, active_deadline=3600))
    wait_for_used(core, namespace, "quota-terminating", used)
    wait_for_used(core, namespace, "quota-not-terminating", zero)
    core.delete_namespaced_pod("terminating-pod", namespace, grace_period_seconds=0)
    wait_for_used(core, namespace, "quota-terminating", zero)


# ------------------------------------------------------------ Garbage collector

def rc_replicas(core, name, namespace):
    rc = core.read_namespaced_replication_controller(name, namespace)
    return rc.status.replicas if rc.status else None


def test_gc_deletes_pods_of_an_rc_deleted_in_background(core, namespace):
    """[sig-api-machinery] Garbage collector should delete pods created by rc when not orphaning [Conformance]"""
    rc = core.create_namespaced_replication_controller(namespace, rc_body("simpletest.rc", 2, {"gctest": "delete_pods"}))
    until(lambda: core.list_namespaced_pod(namespace).items, "the rc to create some pods")
    core.delete_namespaced_replication_controller("simpletest.rc", namespace, body=client.V1DeleteOptions(
        propagation_policy="Background", preconditions=client.V1Preconditions(uid=rc.metadata.uid)))
    until(lambda: not core.list_namespaced_replication_controller(namespace).items
          and not core.list_namespaced_pod(namespace).items, "all pods to be garbage collected", timeout=60)


def test_gc_orphans_pods_of_an_rc_if_delete_options_say_so(core, namespace):
    """[sig-api-machinery] Garbage collector should orphan pods created by rc if delete options say so [Conformance]"""
    replicas = 10
    rc = core.create_namespaced_replication_controller(namespace, rc_body("simpletest.rc", replicas, {"gctest": "orphan_pods"}))
    until(lambda: rc_replicas(core, "simpletest.rc", namespace) == replicas,
          "rc.status.replicas to reach rc.spec.replicas")
    core.delete_namespaced_replication_controller("simpletest.rc", namespace, body=client.V1DeleteOptions(
        propagation_policy="Orphan", preconditions=client.V1Preconditions(uid=rc.metadata.uid)))
    until(lambda: not core.list_namespaced_replication_controller(namespace).items, "the rc to be deleted", timeout=120)
    # Upstream waits 30 s to see whether the collector mistakenly deletes the pods.
    time.sleep(10)
    pods = core.list_namespaced_pod(namespace).items
    assert len(pods) == replicas
    assert all(p.metadata.deletion_timestamp is None for p in pods)


def test_gc_keeps_dependents_with_a_valid_owner_besides_a_waiting_one(core, namespace):
    """[sig-api-machinery] Garbage collector should not delete dependents that have both valid owner and owner that's waiting for dependents to be deleted [Conformance]"""
    replicas, half = 100, 50
    rc1 = core.create_namespaced_replication_controller(namespace, rc_body(
        "simpletest-rc-to-be-deleted", replicas, {"gctest_d": "valid_and_pending_owners_d"}))
    rc2 = core.create_namespaced_replication_controller(namespace, rc_body(
        "simpletest-rc-to-stay", 0, {"gctest_s": "valid_and_pending_owners_s"}))
    until(lambda: rc_replicas(core, rc1.metadata.name, namespace) == replicas, "rc1 to be stable", timeout=60)
    # Half of rc1's pods get rc2 as an owner too.
    pods = core.list_namespaced_pod(namespace).items
    for pod in pods[:half]:
        core.patch_namespaced_pod(pod.metadata.name, namespace, {"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ReplicationController", "name": rc2.metadata.name, "uid": rc2.metadata.uid}]}})
    core.delete_namespaced_replication_controller(rc1.metadata.name, namespace, body=client.V1DeleteOptions(
        propagation_policy="Foreground", preconditions=client.V1Preconditions(uid=rc1.metadata.uid)))
    until(lambda: gone(core.read_namespaced_replication_controller, rc1.metadata.name, namespace),
          "rc1 to be deleted", timeout=90)
    # Half of the pods stay, owned by rc2 alone.
    pods = core.list_namespaced_pod(namespace).items
    assert len(pods) == half
    for pod in pods:
        assert pod.metadata.deletion_timestamp is None
        assert [o.uid for o in pod.metadata.owner_references] == [rc2.metadata.uid]


def test_gc_is_not_blocked_by_a_dependency_circle(core, namespace):
    """[sig-api-machinery] Garbage collector should not be blocked by dependency circle [Conformance]"""
    pods = {name: core.create_namespaced_pod(namespace, pod_body(name)) for name in ("pod1", "pod2", "pod3")}

    def add_ref(name, owner):
        return core.patch_namespaced_pod(name, namespace, {"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "Pod", "name": owner, "uid": pods[owner].metadata.uid,
             "controller": True, "blockOwnerDeletion": True}]}})
    pods["pod1"] = add_ref("pod1", "pod3")
    pods["pod2"] = add_ref("pod2", "pod1")
    pods["pod3"] = add_ref("pod3", "pod2")
    core.delete_namespaced_pod("pod1", namespace, body=client.V1DeleteOptions(
        propagation_policy="Foreground", preconditions=client.V1Preconditions(uid=pods["pod1"].metadata.uid)))
    until(lambda: not core.list_namespaced_pod(namespace).items, "all pods to be deleted", timeout=90)


# ---------------------------------------------------------------- ServiceAccounts

def test_service_account_lifecycle(core, namespace):
    """[sig-auth] ServiceAccounts should run through the lifecycle of a ServiceAccount [Conformance]"""
    selector = "test-serviceaccount-static=true"
    rv = core.list_namespaced_service_account(namespace, label_selector=selector).metadata.resource_version
    events = Events(core.list_namespaced_service_account, namespace, label_selector=selector, resource_version=rv)
    try:
        core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="testserviceaccount", labels={"test-serviceaccount-static": "true"})))
        added = events.expect("ADDED")
        assert added["object"].metadata.labels["test-serviceaccount-static"] == "true"
        patched = core.patch_namespaced_service_account("testserviceaccount", namespace,
                                                        {"automountServiceAccountToken": False})
        assert patched.automount_service_account_token is False
        events.expect("MODIFIED")
        listed = core.list_service_account_for_all_namespaces(label_selector=selector).items
        assert [(s.metadata.namespace, s.metadata.name, s.automount_service_account_token) for s in listed] == \
            [(namespace, "testserviceaccount", False)]
        core.delete_collection_namespaced_service_account(namespace, label_selector=selector)
        while events.next()["type"] != "DELETED":
            pass
    finally:
        events.stop()


def test_root_ca_config_map_exists_in_every_namespace(core, namespace):
    """[sig-auth] ServiceAccounts should guarantee kube-root-ca.crt exist in any namespace [Conformance]"""
    name = "kube-root-ca.crt"

    def published():
        try:
            cm = core.read_namespaced_config_map(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return cm if (cm.data or {}).get("ca.crt") else None
    # Created automatically.
    until(published, "the root CA ConfigMap to be created")
    # Recreated if deleted.
    core.delete_namespaced_config_map(name, namespace)
    cm = until(published, "the root CA ConfigMap to be recreated")
    ca = cm.data["ca.crt"]
    # Reconciled if modified.
    cm.data = {"ca.crt": ""}
    core.replace_namespaced_config_map(name, namespace, cm)
    cm = until(published, "the root CA ConfigMap to be reconciled")
    assert cm.data == {"ca.crt": ca}


# ------------------------------------------------------------------------- apps

def replica_failure(rc):
    conditions = (rc.status and rc.status.conditions) or []
    return next((c for c in conditions if c.type == "ReplicaFailure"), None)


def test_rc_surfaces_exceeded_quota_as_a_failure_condition(core, namespace):
    """[sig-apps] ReplicationController should surface a failure condition on a common issue like exceeded quota [Conformance]"""
    name = "condition-test"
    core.create_namespaced_resource_quota(namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1ResourceQuotaSpec(hard={"pods": "2"})))

    def quota_in_force():
        status = core.read_namespaced_resource_quota(name, namespace).status
        return status and status.hard and parse_quantity(status.hard.get("pods", "0")) == 2
    until(quota_in_force, "the quota's status to show its hard limit")
    core.create_namespaced_replication_controller(namespace, rc_body(name, 3, {"name": name}))
    condition = until(lambda: replica_failure(core.read_namespaced_replication_controller(name, namespace)),
                      "a ReplicaFailure condition")
    assert (condition.status, condition.reason) == ("True", "FailedCreate")
    assert "exceeded quota" in condition.message, condition.message
    # Scaled down to what the quota allows (upstream updates with retries).
    for attempt in range(5):
        rc = core.read_namespaced_replication_controller(name, namespace)
        rc.spec.replicas = 2
        try:
            core.replace_namespaced_replication_controller(name, namespace, rc)
            break
        except ApiException as e:
            if e.status != 409 or attempt == 4:
                raise

    def settled():
        rc = core.read_namespaced_replication_controller(name, namespace)
        return rc.status.observed_generation == rc.metadata.generation and replica_failure(rc) is None
    until(settled, "the ReplicaFailure condition to be removed")


def test_pod_disruption_budget_create_update_patch_delete(api_client, namespace):
    """[sig-apps] DisruptionController should create a PodDisruptionBudget [Conformance]"""
    policy = client.PolicyV1Api(api_client)

    def processed():
        pdb = policy.read_namespaced_pod_disruption_budget("foo", namespace)
        return pdb.status and pdb.status.observed_generation is not None \
            and pdb.status.observed_generation >= pdb.metadata.generation
    policy.create_namespaced_pod_disruption_budget(namespace, client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="foo"),
        spec=client.V1PodDisruptionBudgetSpec(min_available="1%",
                                              selector=client.V1LabelSelector(match_labels={"foo": "bar"}))))
    until(processed, "the pdb to be processed")
    for attempt in range(5):
        pdb = policy.read_namespaced_pod_disruption_budget("foo", namespace)
        pdb.spec.min_available = "2%"
        try:
            updated = policy.replace_namespaced_pod_disruption_budget("foo", namespace, pdb)
            break
        except ApiException as e:
            if e.status != 409 or attempt == 4:
                raise
    assert updated.spec.min_available == "2%"
    until(processed, "the updated pdb to be processed")
    patched = policy.patch_namespaced_pod_disruption_budget("foo", namespace, {"spec": {"minAvailable": "3%"}})
    assert patched.spec.min_available == "3%"
    until(processed, "the patched pdb to be processed")
    policy.delete_namespaced_pod_disruption_budget("foo", namespace)
    until(lambda: gone(policy.read_namespaced_pod_disruption_budget, "foo", namespace), "the pdb to be deleted")


def test_cronjob_replaces_jobs_when_replace_concurrent(api_client, namespace):
    """[sig-apps] CronJob should replace jobs when ReplaceConcurrent [Conformance]"""
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_cron_job(namespace, client.V1CronJob(
        metadata=client.V1ObjectMeta(name="replace"),
        spec=client.V1CronJobSpec(
            schedule="*/1 * * * ?", concurrency_policy="Replace",
            job_template=client.V1JobTemplateSpec(spec=client.V1JobSpec(
                parallelism=1, completions=1, backoff_limit=6,
                template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
                    restart_policy="OnFailure", termination_grace_period_seconds=0,
                    containers=[client.V1Container(name="c", image="busybox", command=["sleep", "300"])])))))))
    def active():
        status = batch.read_namespaced_cron_job("replace", namespace).status
        return (status and status.active) or []
    until(lambda: len(active()) >= 1,
          "a job to be scheduled", timeout=120)
    assert len(active()) == 1

    def finished(job):
        return any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or [])
    jobs = batch.list_namespaced_job(namespace).items
    active = [j for j in jobs if not finished(j)]
    assert len(active) == 1
    first = jobs[0].metadata.name

    def replaced():
        jobs = batch.list_namespaced_job(namespace).items
        assert len(jobs) <= 1, f"more than one job is running: {[j.metadata.name for j in jobs]}"
        return len(jobs) == 1 and jobs[0].metadata.name != first
    until(replaced, "the job to be replaced with a new one", timeout=150)
    batch.delete_namespaced_cron_job("replace", namespace)


# ------------------------------------------------------- ValidatingAdmissionPolicy

def basic(kind, name, replicas):
    labels = {"app": "nginx"}
    spec = dict(replicas=replicas, selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(
                    containers=[client.V1Container(name="nginx", image="nginx:latest")])))
    if kind == "Deployment":
        return client.V1Deployment(metadata=client.V1ObjectMeta(name=name, labels=labels),
                                   spec=client.V1DeploymentSpec(**spec))
    return client.V1ReplicaSet(metadata=client.V1ObjectMeta(name=name, labels=labels),
                               spec=client.V1ReplicaSetSpec(**spec))


def policy_checks(api_client, core, namespace, policy_spec, allowed_replicas, denied_replicas=None):
    """Upstream's steps: label the namespace, create the policy and its Deny
    binding (both selecting that namespace), wait until the marker (a
    1-replica Deployment) is denied as invalid, then a Deployment with
    `allowed_replicas` is allowed and a 1-replica ReplicaSet is not denied;
    and, if given, a Deployment with `denied_replicas` is denied."""
    adm = client.AdmissionregistrationV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    unique = namespace
    core.patch_namespace(namespace, {"metadata": {"labels": {unique: "true"}}})
    selector = {"matchLabels": {unique: "true"}}
    spec = dict(policy_spec, matchConstraints={
        "namespaceSelector": selector,
        "resourceRules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
                           "resources": ["deployments"]}]})
    policy = adm.create_validating_admission_policy({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": unique + ".policy.example.com"}, "spec": spec})
    binding = adm.create_validating_admission_policy_binding({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": unique + ".binding.example.com"},
        "spec": {"policyName": policy.metadata.name, "matchResources": {"namespaceSelector": selector},
                 "validationActions": ["Deny"]}})
    try:
        def marker_denied():
            try:
                apps.create_namespaced_deployment(namespace, basic("Deployment", "marker-deployment", 1))
            except ApiException as e:
                if e.status == 422:
                    return True
                raise
            apps.delete_namespaced_deployment("marker-deployment", namespace)
            return False
        until(marker_denied, "the marker to be denied")
        apps.create_namespaced_deployment(namespace, basic("Deployment", "replicated", allowed_replicas))
        apps.create_namespaced_replica_set(namespace, basic("ReplicaSet", "non-replicated", 1))
        if denied_replicas is not None:
            try:
                apps.create_namespaced_deployment(namespace, basic("Deployment", "denied", denied_replicas))
                raise AssertionError(f"a {denied_replicas}-replica Deployment was allowed")
            except ApiException as e:
                assert e.status == 422, e
    finally:
        adm.delete_validating_admission_policy_binding(binding.metadata.name)
        adm.delete_validating_admission_policy(policy.metadata.name)


def test_validating_admission_policy_against_a_deployment(api_client, core, namespace):
    """[sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should validate against a Deployment [Conformance]"""
    policy_checks(api_client, core, namespace, {"validations": [{
        "expression": "object.spec.replicas > 1",
        "messageExpression": "'wants replicas > 1, got ' + string(object.spec.replicas)"}]}, 2)


def test_validating_admission_policy_variables(api_client, core, namespace):
    """[sig-api-machinery] ValidatingAdmissionPolicy [Privileged:ClusterAdmin] should allow expressions to refer variables. [Conformance]"""
    policy_checks(api_client, core, namespace, {
        "variables": [{"name": "replicas", "expression": "object.spec.replicas"},
                      {"name": "oddReplicas", "expression": "variables.replicas % 2 == 1"}],
        "validations": [{"expression": "variables.replicas > 1"}, {"expression": "variables.oddReplicas"}]},
        3, denied_replicas=4)


# ----------------------------------------------------------------- RuntimeClass

def runtime_class_pod(runtime_class):
    """Upstream's NewRuntimeClassPod."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(generate_name="test-runtimeclass-"),
        spec=client.V1PodSpec(runtime_class_name=runtime_class, restart_policy="Never",
                              automount_service_account_token=False,
                              containers=[client.V1Container(name="test", image="busybox", command=["true"])]))


def expect_pod_rejection(core, namespace, pod):
    try:
        core.create_namespaced_pod(namespace, pod)
    except ApiException as e:
        assert e.status == 403, e
        return json.loads(e.body)["message"]
    raise AssertionError("the pod was admitted; it should be forbidden")


def test_runtime_class_nonexistent(core, namespace):
    """[sig-node] RuntimeClass should reject a Pod requesting a non-existent RuntimeClass [NodeConformance] [Conformance]"""
    name = namespace + "-nonexistent"
    message = expect_pod_rejection(core, namespace, runtime_class_pod(name))
    assert message == f'pods is forbidden: pod rejected: RuntimeClass "{name}" not found', message


def test_runtime_class_deleted(api_client, core, namespace):
    """[sig-node] RuntimeClass should reject a Pod requesting a deleted RuntimeClass [NodeConformance] [Conformance]"""
    node = client.NodeV1Api(api_client)
    name = namespace + "-delete-me"
    node.create_runtime_class(client.V1RuntimeClass(metadata=client.V1ObjectMeta(name=name), handler="runc"))
    node.delete_runtime_class(name)
    until(lambda: gone(node.read_runtime_class, name), "the RuntimeClass to disappear", timeout=60)
    expect_pod_rejection(core, namespace, runtime_class_pod(name))


def test_runtime_class_sets_overhead_and_scheduling(api_client, core, namespace):
    """A pod gets its RuntimeClass's overhead, node selector and tolerations;
    a pod stating another overhead or a conflicting node selector is refused."""
    node = client.NodeV1Api(api_client)
    name = namespace + "-sandboxed"
    node.create_runtime_class(client.V1RuntimeClass(
        metadata=client.V1ObjectMeta(name=name), handler="runc",
        overhead=client.V1Overhead(pod_fixed={"cpu": "250m", "memory": "120Mi"}),
        scheduling=client.V1Scheduling(node_selector={"sandbox": "yes"}, tolerations=[
            client.V1Toleration(key="sandbox", operator="Exists", effect="NoSchedule")])))
    try:
        pod = core.create_namespaced_pod(namespace, runtime_class_pod(name))
        assert {k: parse_quantity(v) for k, v in pod.spec.overhead.items()} == \
            {"cpu": parse_quantity("250m"), "memory": parse_quantity("120Mi")}
        assert pod.spec.node_selector == {"sandbox": "yes"}
        assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations if t.key == "sandbox"] == \
            [("sandbox", "Exists", "NoSchedule")]
        other = runtime_class_pod(name)
        other.spec.overhead = {"cpu": "1"}
        assert "Pod's Overhead doesn't match RuntimeClass's defined Overhead" in expect_pod_rejection(core, namespace, other)
        conflicting = runtime_class_pod(name)
        conflicting.spec.node_selector = {"sandbox": "no"}
        assert "conflict: runtimeClass.scheduling.nodeSelector[sandbox] = yes; pod.spec.nodeSelector[sandbox] = no" in \
            expect_pod_rejection(core, namespace, conflicting)
    finally:
        node.delete_runtime_class(name)


# ------------------------------------------------------------ EndpointSlices

def test_endpointslice_mirroring_of_custom_endpoints(api_client, core, namespace):
    """[sig-network] EndpointSliceMirroring should mirror a custom Endpoints resource through create update and delete [Conformance]"""
    groups = client.ApisApi(api_client).get_api_versions().groups
    assert "discovery.k8s.io/v1" in [v.group_version for g in groups if g.name == "discovery.k8s.io" for v in g.versions]
    resources = client.DiscoveryV1Api(api_client).get_api_resources().resources
    assert "endpointslices" in [r.name for r in resources]
    discovery = client.DiscoveryV1Api(api_client)
    name = "example-custom-endpoints"
    core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="example", port=80, protocol="TCP")])))
    endpoints = client.V1Endpoints(metadata=client.V1ObjectMeta(name=name), subsets=[client.V1EndpointSubset(
        ports=[client.CoreV1EndpointPort(port=80)], addresses=[client.V1EndpointAddress(ip="10.1.2.3")])])

    def mirrored(address):
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={name}").items
        if not slices:
            return None
        # Every slice the controller made must be valid (upstream allows a
        # second one made from a stale cache).
        for s in slices:
            assert s.metadata.labels["endpointslice.kubernetes.io/managed-by"] == \
                "endpointslicemirroring-controller.k8s.io"
            assert [p.port for p in s.ports] == [80]
            assert len(s.endpoints) == 1 and len(s.endpoints[0].addresses) == 1
            if s.endpoints[0].addresses[0] != address:
                return None
        return slices
    # Mirroring a new custom Endpoints (upstream polls 12 s each step).
    core.create_namespaced_endpoints(namespace, endpoints)
    until(lambda: mirrored("10.1.2.3"), "an EndpointSlice mirroring the Endpoints", timeout=12)
    # An update (unconditional, as upstream's).
    endpoints.subsets[0].addresses = [client.V1EndpointAddress(ip="10.2.3.4")]
    core.replace_namespaced_endpoints(name, namespace, endpoints)
    until(lambda: mirrored("10.2.3.4"), "the EndpointSlice to mirror the update", timeout=12)
    # A deletion.
    core.delete_namespaced_endpoints(name, namespace)
    until(lambda: not discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={name}").items,
        "the mirrored EndpointSlices to be deleted", timeout=12)


# ------------------------------------------------------- CustomResourceDefinition

def noxu_crd(plural, group="mygroup.example.com", kind="WishIt"):
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Cluster",
                 "names": {"plural": plural, "singular": plural[:-1], "kind": kind, "listKind": kind + "List"},
                 "versions": [{"name": "v1beta1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]}}


def create_established(ext, body):
    crd = ext.create_custom_resource_definition(body)

    def established():
        got = ext.read_custom_resource_definition(crd.metadata.name)
        return any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []) and got
    return until(established, "the CRD to be established")


def test_crd_watch(api_client):
    """[sig-api-machinery] CustomResourceDefinition Watch [Privileged:ClusterAdmin] CustomResourceDefinition Watch watch on custom resource definition objects [Conformance]"""
    ext = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    group, plural = "mygroup.example.com", "noxus"
    crd = create_established(ext, noxu_crd(plural))
    try:
        until(lambda: served(custom, group, plural), "the custom resource to be served")
        rv = custom.list_cluster_custom_object(group, "v1beta1", plural)["metadata"]["resourceVersion"]
        watch_a = Events(custom.list_cluster_custom_object, group, "v1beta1", plural,
                         field_selector="metadata.name=name1", resource_version=rv)
        watch_b = Events(custom.list_cluster_custom_object, group, "v1beta1", plural,
                         field_selector="metadata.name=name2", resource_version=rv)

        def instance(name):
            return {"apiVersion": f"{group}/v1beta1", "kind": "WishIt", "metadata": {"name": name},
                    "content": {"key": "value"}, "num": {"num1": 9223372036854775807, "num2": 1000000}}
        a = custom.create_cluster_custom_object(group, "v1beta1", plural, instance("name1"))
        assert watch_a.expect("ADDED")["object"]["metadata"]["uid"] == a["metadata"]["uid"]
        watch_b.expect_none()
        b = custom.create_cluster_custom_object(group, "v1beta1", plural, instance("name2"))
        assert watch_b.expect("ADDED")["object"]["metadata"]["uid"] == b["metadata"]["uid"]
        watch_a.expect_none()
        custom.patch_cluster_custom_object(group, "v1beta1", plural, "name1", {"dummy": "test"})
        assert watch_a.expect("MODIFIED")["object"]["dummy"] == "test"
        watch_b.expect_none()
        custom.patch_cluster_custom_object(group, "v1beta1", plural, "name2", {"dummy": "test"})
        assert watch_b.expect("MODIFIED")["object"]["dummy"] == "test"
        watch_a.expect_none()
        custom.delete_cluster_custom_object(group, "v1beta1", plural, "name1")
        watch_a.expect("DELETED")
        watch_b.expect_none()
        custom.delete_cluster_custom_object(group, "v1beta1", plural, "name2")
        watch_b.expect("DELETED")
        watch_a.expect_none()
        watch_a.stop()
        watch_b.stop()
    finally:
        ext.delete_custom_resource_definition(crd.metadata.name)


def served(custom, group, plural):
    """True once the custom resource is served."""
    try:
        custom.list_cluster_custom_object(group, "v1beta1", plural)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def test_crd_status_subresource(api_client):
    """[sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] Simple CustomResourceDefinition getting/updating/patching custom resource definition status sub-resource works [Conformance]"""
    dyn = dynamic.DynamicClient(api_client)
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    status = crds.subresources["status"]
    def has(crd, condition):
        """Upstream compares Go structs: unset fields are their zero value."""
        return condition in [{k: v for k, v in c.items() if v not in ("", None)} for c in crd["status"]["conditions"]]
    crd = crds.create(body=noxu_crd("statusnoxus", group="status.example.com", kind="StatusNoxu")).to_dict()
    name = crd["metadata"]["name"]
    try:
        # Read-modify-write of the status, retried on conflict as upstream's.
        for attempt in range(5):
            current = status.get(name=name).to_dict()
            assert current["spec"] == crd["spec"]
            current.setdefault("status", {}).setdefault("conditions", []).append({"message": "updated"})
            try:
                updated = status.replace(body=current).to_dict()
                break
            except dynamic.exceptions.ConflictError:
                if attempt == 4:
                    raise
        assert has(updated, {"message": "updated"})
        assert has(status.get(name=name).to_dict(), {"message": "updated"})
        patched = status.patch(name=name, body=[{"op": "add", "path": "/status/conditions", "value": [{"message": "patched"}]}],
                               content_type="application/json-patch+json").to_dict()
        assert has(patched, {"message": "patched"})
    finally:
        crds.delete(name=name)
