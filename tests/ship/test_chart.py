"""The Helm chart: lint, schema, least-privilege RBAC, webhook wiring, security context, and
what the real apiserver says about every rendered document (server-side dry run)."""

from __future__ import annotations

import base64
import datetime as dt
import filecmp

import kopf
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from tests.ship.shiplib import CHART, REPO, Doc, docs, helm, kinds, one, render, rule_set

from nassync.controller import main as operator_main
from nassync.controller import webhook
from nassync_dev.testing import Kubectl

# The operator's whole API surface (operator/nassync/controller/kube.py + kopf's
# watches). Widening this is a deliberate change: edit the set, the chart's
# _helpers.tpl, manifests/base/rbac.yaml and docs/install.md together.
NAMESPACED_RULES = {
    ("nassync.dev", "syncjobs"): frozenset({"list", "watch", "delete"}),
    ("nassync.dev", "synctargets"): frozenset({"get", "list", "watch"}),
    ("nassync.dev", "syncjobs/status"): frozenset({"update"}),
    ("nassync.dev", "synctargets/status"): frozenset({"patch"}),
    ("batch", "jobs"): frozenset({"list", "watch", "create", "delete"}),
    ("", "pods"): frozenset({"list"}),
    ("", "pods/log"): frozenset({"get"}),
    ("", "secrets"): frozenset({"get"}),
    ("", "events"): frozenset({"create", "list"}),
}
KOPF_CLUSTER_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): frozenset({"list", "watch"})}
KOPF_NAMESPACES_RULES = {("", "namespaces"): frozenset({"list", "watch"})}
EXPECTED_CLUSTERWIDE = {**KOPF_CLUSTER_RULES, **NAMESPACED_RULES}

ALL_TOGGLES = (
    "webhook.certManager.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "dashboards.enabled=true",
)


def test_helm_lint_strict_is_clean() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_chart_crds_are_the_repository_crds() -> None:
    top = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == top
    for name in top:
        assert filecmp.cmp(REPO / "crds" / name, CHART / "crds" / name, shallow=False), (
            f"charts/nassync/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/nassync/crds/"
        )


@pytest.mark.parametrize(
    "bad",
    [
        "replicaCount=abc",  # wrong type
        "replicaCount=-1",
        "leaderElection.lease=x",  # additionalProperties: false
        "unknownKey=1",  # additionalProperties: false at the top
        "webhook.unknown=1",  # ... and in nested objects
        "logFormat=xml",
        "watchNamespaces={lab-*}",  # globs cannot get a Role
        "webhook.certManager.issuerRef.kind=Foo",
        "image.digest=latest",
    ],
)
def test_values_schema_rejects_bad_values(bad: str) -> None:
    result = helm("template", "nassync", str(CHART), "--set", bad, check=False)
    assert result.returncode != 0, f"--set {bad} was accepted"
    assert "schema" in result.stderr.lower() or "values don't meet" in result.stderr.lower(), result.stderr


def test_default_render_has_the_documented_objects_and_stable_names() -> None:
    out = docs(render())
    assert kinds(out) == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "Service",
            "Secret",
            "ValidatingWebhookConfiguration",
            "Role",
            "RoleBinding",
            "PodDisruptionBudget",
        ]
    )
    # Stable names for release "nassync": the RBAC e2e test binds to these.
    sa = one(out, "ServiceAccount", "nassync-operator")
    assert sa["metadata"]["namespace"] == "nassync-system"
    binding = one(out, "ClusterRoleBinding", "nassync-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "nassync-operator",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nassync-operator", "namespace": "nassync-system"}
    ]
    one(out, "Deployment", "nassync-operator")


def test_clusterrole_is_exactly_the_least_privilege_set() -> None:
    role = one(docs(render()), "ClusterRole", "nassync-operator")
    assert rule_set(role["rules"]) == EXPECTED_CLUSTERWIDE


ELECTION_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["nassync-operator"],
     "verbs": ["get", "update"]},
]


def test_leader_election_adds_only_its_lease_in_the_release_namespace_and_a_pdb() -> None:
    out = docs(render())
    role = one(out, "Role", "nassync-operator-leader-election")
    assert role["metadata"]["namespace"] == "nassync-system"
    assert role["rules"] == ELECTION_RULES
    binding = one(out, "RoleBinding", "nassync-operator-leader-election")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nassync-operator", "namespace": "nassync-system"}]
    pdb = one(out, "PodDisruptionBudget", "nassync-operator")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(out, "Deployment")["spec"]["selector"]["matchLabels"]
    single = docs(render("replicaCount=1", "leaderElection.enabled=false"))
    assert "PodDisruptionBudget" not in kinds(single) and "Role" not in kinds(single)
    assert one(single, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    failed = helm("template", "nassync", str(CHART), "--set", "leaderElection.enabled=false", check=False)
    assert failed.returncode != 0 and "leaderElection" in failed.stderr


def test_watch_namespaces_renders_roles_per_namespace_and_no_cluster_wide_access() -> None:
    out = docs(render("watchNamespaces={lab-a,lab-b}"))
    cluster_role = one(out, "ClusterRole", "nassync-operator")
    assert rule_set(cluster_role["rules"]) == {**KOPF_CLUSTER_RULES, **KOPF_NAMESPACES_RULES}
    roles = {d["metadata"]["namespace"]: d for d in out if d["kind"] == "Role"
             and not d["metadata"]["name"].endswith("-leader-election")}
    bindings = {d["metadata"]["namespace"]: d for d in out if d["kind"] == "RoleBinding"
                and not d["metadata"]["name"].endswith("-leader-election")}
    assert set(roles) == set(bindings) == {"lab-a", "lab-b"}
    for namespace, role in roles.items():
        assert rule_set(role["rules"]) == NAMESPACED_RULES
        assert bindings[namespace]["roleRef"]["name"] == role["metadata"]["name"]
        assert bindings[namespace]["subjects"] == [
            {"kind": "ServiceAccount", "name": "nassync-operator", "namespace": "nassync-system"}
        ]
    args = operator_main.parse_args(_container(out)["args"])
    assert args.namespace == ["lab-a", "lab-b"]
    hook = one(out, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["lab-a", "lab-b"]}
    ]


def _container(out: list[Doc]) -> Doc:
    containers = one(out, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def test_deployment_is_one_restricted_operator_whose_flags_the_operator_accepts() -> None:
    out = docs(
        render(
            "moverImage.repository=registry.lab/nassync-mover",
            "moverImage.tag=7",
            "logFormat=text",
            "nodeSelector.role=infra",
        )
    )
    deploy = one(out, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "nassync-operator"
    assert pod["nodeSelector"] == {"role": "infra"}
    # A real kubelet injects <SERVICE>_PORT=tcp://... for every Service in the namespace: for
    # nassync-metrics/nassync-webhook that is NASSYNC_METRICS_PORT/NASSYNC_WEBHOOK_PORT, which the
    # operator reads as its ports (found on the kubelet node: the pod crash-looped).
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = _container(out)
    assert c["command"] == ["nassync-operator"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]

    # Every flag the chart passes is one nassync-operator parses, with the chart's values.
    args = operator_main.parse_args(c["args"])
    assert (args.metrics_port, args.health_port, args.webhook_port) == (8080, 8081, 9443)
    assert args.mover_image == "registry.lab/nassync-mover:7"
    assert args.log_format == "text" and args.namespace == []
    assert args.leader_elect is True
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert (args.webhook_cert, args.webhook_key) == ("/certs/tls.crt", "/certs/tls.key")
    assert mounts["/certs"] == "webhook-certs"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "webhook": 9443}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}

    metrics = one(out, "Service", "nassync-metrics")
    assert metrics["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert metrics["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]


def test_mover_image_defaults_to_the_operator_image_and_digests_win() -> None:
    digest = "sha256:" + "ab" * 32
    c = _container(docs(render(f"image.digest={digest}")))
    assert c["image"] == f"ghcr.io/nassync/nassync@{digest}"
    assert operator_main.parse_args(c["args"]).mover_image == c["image"]
    c = _container(docs(render("image.tag=0.2.0")))
    assert c["image"] == "ghcr.io/nassync/nassync:0.2.0"
    assert operator_main.parse_args(c["args"]).mover_image == c["image"]


def _webhook_handler_path() -> str:
    ids = [h.id for h in kopf.get_default_registry()._webhooks.get_all_handlers() if h.fn is webhook.validate_syncjob]
    assert len(ids) == 1, ids
    return f"/{ids[0]}"  # kopf routes POST /<handler id> (kopf/_kits/webhooks.py)


def test_webhook_points_at_the_kopf_handler_with_a_certificate_the_ca_signed() -> None:
    out = docs(render(namespace="lab-ops"))
    config = one(out, "ValidatingWebhookConfiguration")
    assert len(config["webhooks"]) == 1
    hook = config["webhooks"][0]
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["rules"] == [
        {
            "apiGroups": ["nassync.dev"],
            "apiVersions": ["v1alpha1"],
            "resources": ["syncjobs"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    service_ref = hook["clientConfig"]["service"]
    assert service_ref["path"] == _webhook_handler_path() == "/syncjob-policy"
    service = one(out, "Service", service_ref["name"])
    assert service_ref["namespace"] == service["metadata"]["namespace"] == "lab-ops"
    assert service["spec"]["ports"][0]["port"] == service_ref["port"] == 9443
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"

    # The Secret the pod mounts holds a certificate for the Service's DNS name,
    # signed by the CA the apiserver is told to trust.
    secret_name = next(
        v["secret"]["secretName"]
        for v in one(out, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "webhook-certs"
    )
    secret = one(out, "Secret", secret_name)
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    assert base64.b64decode(secret["data"]["ca.crt"]) == base64.b64decode(hook["clientConfig"]["caBundle"])
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{service['metadata']['name']}.lab-ops.svc" in names
    assert cert.issuer == ca.subject
    public = ca.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=365)


def test_cert_manager_mode_issues_the_mounted_secret_and_injects_the_ca() -> None:
    out = docs(render("webhook.certManager.enabled=true"))
    assert not [d for d in out if d["kind"] == "Secret"], "cert-manager owns the TLS Secret"
    cert = one(out, "Certificate")
    issuer = one(out, "Issuer")
    assert cert["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"] and "selfSigned" in issuer["spec"]
    mounted = next(
        v["secret"]["secretName"]
        for v in one(out, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "webhook-certs"
    )
    assert cert["spec"]["secretName"] == mounted
    config = one(out, "ValidatingWebhookConfiguration")
    assert (
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == f"nassync-system/{cert['metadata']['name']}"
    )
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert "nassync-webhook.nassync-system.svc" in cert["spec"]["dnsNames"]

    out = docs(
        render(
            "webhook.certManager.enabled=true",
            "webhook.certManager.issuerRef.name=lab-ca",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
        )
    )
    assert not [d for d in out if d["kind"] == "Issuer"]
    assert one(out, "Certificate")["spec"]["issuerRef"] == {
        "name": "lab-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_webhook_disabled_renders_no_webhook_objects_and_no_flags() -> None:
    out = docs(render("webhook.enabled=false"))
    assert not [d for d in out if d["kind"] in ("ValidatingWebhookConfiguration", "Secret", "Certificate")]
    assert [d["metadata"]["name"] for d in out if d["kind"] == "Service"] == ["nassync-metrics"]
    args = operator_main.parse_args(_container(out)["args"])
    assert args.webhook_port == 0


def test_service_monitor_scrapes_the_metrics_service() -> None:
    out = docs(render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"))
    monitor = one(out, "ServiceMonitor")
    service = one(out, "Service", "nassync-metrics")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # ... and only it (the webhook Service carries the same selector labels).
    webhook_service = one(out, "Service", "nassync-webhook")
    assert not selector.items() <= webhook_service["metadata"]["labels"].items()


@pytest.mark.cluster
@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("webhook.enabled=false",),
        ALL_TOGGLES,
        (
            "webhook.certManager.enabled=true",
            "webhook.certManager.issuerRef.name=lab-ca",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
        ),
    ],
    ids=["defaults", "no-webhook", "all-toggles", "cert-manager-cluster-issuer"],
)
def test_rendered_chart_is_accepted_by_the_apiserver(ns: Kubectl, stub_crds: Kubectl, sets: tuple[str, ...]) -> None:
    # ServiceMonitor, PrometheusRule, Certificate and Issuer validate against the
    # stub CRDs of tests/ship/conftest.py (the local cluster has neither
    # prometheus-operator nor cert-manager); everything else against the real API.
    assert ns.namespace
    text = render(*sets, namespace=ns.namespace)
    result = ns("apply", "--dry-run=server", "-f", "-", input=text)
    for d in docs(text):
        assert f"{d['kind'].lower()}" in result.lower(), f"{d['kind']} missing from:\n{result}"
    assert result.count("(server dry run)") == len(docs(text))


@pytest.mark.cluster
def test_watch_namespaces_render_is_accepted_by_the_apiserver(ns: Kubectl, cluster: Kubectl) -> None:
    assert ns.namespace
    # A release name of its own: a real install of release "nassync" may exist on a shared cluster.
    release = f"ship-{ns.namespace}"
    text = render(
        f"watchNamespaces={{{ns.namespace},default}}",
        "dashboards.enabled=true",
        namespace=ns.namespace,
        release=release,
    )
    result = cluster("apply", "--dry-run=server", "-f", "-", input=text)
    lines = result.splitlines()
    assert lines.count(f"role.rbac.authorization.k8s.io/{release}-nassync-operator created (server dry run)") == 2
    assert (
        lines.count(f"rolebinding.rbac.authorization.k8s.io/{release}-nassync-operator created (server dry run)") == 2
    )
    assert result.count("(server dry run)") == len(docs(text))
