"""Checks what a schema cannot: the rendered manifests of one overlay (a multi-document
YAML file) keep the properties the README promises. Exits non-zero with every problem."""
import ipaddress
import sys

import yaml

path, min_replicas = sys.argv[1], int(sys.argv[2])
docs = [d for d in yaml.safe_load_all(open(path)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)


for kind in ["Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
             "ConfigMap", "Secret", "ServiceAccount", "NetworkPolicy"]:
    need(len(by_kind.get(kind, [])) == 1, f"exactly one {kind}")
if problems:
    sys.exit("\n".join(problems))

dep = by_kind["Deployment"][0]
spec = dep["spec"]
pod = spec["template"]["spec"]
(c,) = pod["containers"]
need(spec["replicas"] >= min_replicas, f"replicas {spec['replicas']} < {min_replicas}")
need(spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "rollouts keep every replica")
need(pod["securityContext"].get("runAsNonRoot") is True, "pod runAsNonRoot")
need(pod["securityContext"].get("runAsUser", 0) != 0, "pod runs as a non-zero uid")
need(pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp")
need(pod.get("automountServiceAccountToken") is False, "no service account token mounted")
sc = c["securityContext"]
need(sc.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
need(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
need(sc.get("capabilities", {}).get("drop") == ["ALL"], "all capabilities dropped")
need(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe on /healthz")
need(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe on /readyz")
need("limits" in c["resources"] and "requests" in c["resources"], "resources")
need(not c["image"].startswith("ferry:"), "the overlay sets the image")

# The generated names (with their content hash) are the ones the Deployment uses.
cm, secret = by_kind["ConfigMap"][0], by_kind["Secret"][0]
volumes = {v["name"]: v for v in pod["volumes"]}
need(volumes["config"]["configMap"]["name"] == cm["metadata"]["name"], "config map reference")
refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
for env, key in [("FERRY_KEK", "kek"), ("FERRY_POSTGRES_URL", "postgres-url")]:
    need(refs.get(env, {}).get("name") == secret["metadata"]["name"], f"{env} from the Secret")
    need(refs.get(env, {}).get("key") == key and key in secret.get("data", {}), f"Secret key {key}")
need("ferry.yaml" in cm["data"], "ferry.yaml in the ConfigMap")


def seconds(text, default):
    """A Ferry duration (90s, 15m, 1h30m, 2d or a number of seconds)."""
    if text is None:
        return default
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    total, digits = 0, ""
    for ch in text:
        if ch.isdigit():
            digits += ch
        else:
            total += int(digits) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[ch]
            digits = ""
    return total


# A rollout drains each pod: SIGTERM, serve on for shutdown_delay, then shutdown_timeout
# for in-flight requests. The kubelet must not kill Ferry before (margin: 5 s).
limits = (yaml.safe_load(cm["data"]["ferry.yaml"]) or {}).get("limits") or {}
drain = seconds(limits.get("shutdown_delay"), 5) + seconds(limits.get("shutdown_timeout"), 20)
grace = pod.get("terminationGracePeriodSeconds", 30)
need(grace >= drain + 5, f"terminationGracePeriodSeconds {grace} < shutdown_delay + shutdown_timeout + 5 s ({drain + 5})")

pdb, hpa = by_kind["PodDisruptionBudget"][0], by_kind["HorizontalPodAutoscaler"][0]
need(pdb["spec"]["minAvailable"] < spec["replicas"], "a drain can make progress")
need(hpa["spec"]["minReplicas"] >= min_replicas, "the autoscaler keeps the minimum")
need(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "autoscaler target")
selector = dep["spec"]["selector"]["matchLabels"]
svc = by_kind["Service"][0]
need(all(svc["spec"]["selector"].get(k) == v for k, v in selector.items()), "service selects the pods")
need(all(pdb["spec"]["selector"]["matchLabels"].get(k) == v for k, v in selector.items()), "budget selects the pods")

# Only the ingress reaches the HTTP port, and only narrow ranges may name the client.
netpol = by_kind["NetworkPolicy"][0]["spec"]
need(all(netpol["podSelector"]["matchLabels"].get(k) == v for k, v in selector.items()),
     "the network policy selects the pods")
need(netpol.get("policyTypes") == ["Ingress"], "the network policy restricts ingress")
rules = netpol.get("ingress", [])
need(len(rules) == 1 and all("namespaceSelector" in f for f in rules[0].get("from", [])) and rules[0].get("from"),
     "ingress admitted only from the ingress controller's namespace")
need([p.get("port") for p in rules[0].get("ports", [])] == [c["ports"][0]["containerPort"]] if rules else False,
     "only the HTTP port is admitted")
config = yaml.safe_load(by_kind["ConfigMap"][0]["data"]["ferry.yaml"])
proxies = [ipaddress.ip_network(p, strict=False) for p in config.get("trusted_proxies", [])]
need(proxies, "trusted_proxies names the ingress controller")
need(all(n.prefixlen >= (24 if n.version == 4 else 64) for n in proxies),
     "trusted_proxies holds the controller's addresses, never a pod or node range")

if problems:
    sys.exit(f"{path}:\n  " + "\n  ".join(problems))
# The configuration, for `ferry check`.
open(path + ".ferry.yaml", "w").write(cm["data"]["ferry.yaml"])
print(f"{path}: {len(docs)} objects, {spec['replicas']} replicas: OK")
