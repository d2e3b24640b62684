"""Checks what a schema cannot: the rendered manifests of one overlay (a multi-document
YAML file) keep the properties the README promises. Exits non-zero with every problem.

  python3 check.py RENDERED.yaml MIN_REPLICAS [SERVICEMONITOR.yaml]"""
import base64
import ipaddress
import sys
from urllib.parse import urlparse

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


for kind in ["Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap",
             "ServiceAccount"]:
    need(len(by_kind.get(kind, [])) == 1, f"exactly one {kind}")
for kind in ["Service", "Secret", "NetworkPolicy"]:
    need(by_kind.get(kind), f"a {kind}")
if problems:
    sys.exit("\n".join(problems))


def named(kind, name, generated=False):
    """The object of `kind` called `name` (`name-<hash>` when `generated`)."""
    found = [d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name
             or generated and d["metadata"]["name"].rsplit("-", 1)[0] == name]
    need(len(found) == 1, f"exactly one {kind} {name}")
    return found[0] if found else {"metadata": {"name": ""}, "spec": {}, "data": {}}


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
cm, secret = by_kind["ConfigMap"][0], named("Secret", "ferry-secrets", generated=True)
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
svc = named("Service", "ferry")
need(all(svc["spec"]["selector"].get(k) == v for k, v in selector.items()), "service selects the pods")
need(all(pdb["spec"]["selector"]["matchLabels"].get(k) == v for k, v in selector.items()), "budget selects the pods")

# What reaches Ferry's pods: the HTTP port from the ingress controller's namespace, the
# metrics port from the monitoring namespace, nothing else (the admin listener stays on
# loopback). Policies add up, so every rule of every policy selecting the pods counts.
ferry_conf = yaml.safe_load(cm["data"]["ferry.yaml"]) or {}
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
metrics_listen = (ferry_conf.get("metrics") or {}).get("listen")
need(metrics_listen and int(str(metrics_listen).rsplit(":", 1)[1]) == ports.get("metrics"),
     f"metrics.listen ({metrics_listen}) is the container port named metrics ({ports.get('metrics')})")
admin_listen = str((ferry_conf.get("admin") or {}).get("listen", "127.0.0.1:9090"))
need(admin_listen == "off" or admin_listen.startswith(("127.", "localhost:", "[::1]")),
     "the admin listener stays on the pod's loopback")
admitted = set()
for np in by_kind["NetworkPolicy"]:
    nps = np["spec"]
    sel = nps["podSelector"].get("matchLabels", {})
    if not all(sel.get(k) == v for k, v in selector.items()):
        continue
    need(nps.get("policyTypes") == ["Ingress"], f"{np['metadata']['name']} restricts ingress")
    for rule in nps.get("ingress", []):
        froms = rule.get("from", [])
        need(froms and all(set(f) == {"namespaceSelector"} for f in froms),
             f"{np['metadata']['name']}: every rule admits named namespaces only")
        need(rule.get("ports"), f"{np['metadata']['name']}: every rule names its ports")
        for f in froms:
            ns = f["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
            for p in rule.get("ports", []):
                admitted.add((p.get("port"), ns))
need(admitted == {(ports["http"], "ingress-nginx"), (ports.get("metrics"), "monitoring")},
     f"only http from the ingress and metrics from monitoring reach Ferry: {sorted(admitted, key=str)}")
msvc = named("Service", "ferry-metrics")
need(all(msvc["spec"].get("selector", {}).get(k) == v for k, v in selector.items()),
     "the metrics Service selects the pods")
need([p.get("targetPort") for p in msvc["spec"].get("ports", [])] == ["metrics"],
     "the metrics Service exposes the metrics port only")

# The datastores overlay: Redis persists and PostgreSQL keeps its data on claimed
# volumes, only Ferry's pods reach them, and Ferry's configuration names them.
sets = {d["metadata"]["name"]: d for d in by_kind.get("StatefulSet", [])}
for ss in sets.values():
    labels = ss["spec"]["template"]["metadata"].get("labels", {})
    need(not all(labels.get(k) == v for k, v in selector.items()),
         f"{ss['metadata']['name']}'s pods are not selected as Ferry's")


def persisted(ss):
    """The container and its mount paths backed by a volumeClaimTemplate."""
    claims = {t["metadata"]["name"] for t in ss["spec"].get("volumeClaimTemplates", [])}
    (ct,) = ss["spec"]["template"]["spec"]["containers"]
    return ct, {m["mountPath"] for m in ct.get("volumeMounts", []) if m["name"] in claims}


if sets:
    need(set(sets) == {"ferry-redis", "ferry-postgres"}, "StatefulSets ferry-redis and ferry-postgres")
if "ferry-redis" in sets:
    ct, paths = persisted(sets["ferry-redis"])
    args = [str(a) for a in ct.get("args", [])]
    opt = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
    need(opt.get("--appendonly") == "yes", "Redis runs with appendonly yes")
    need(opt.get("--dir", "/data") in paths, "Redis' data directory is on a PersistentVolumeClaim")
    url = urlparse(str((ferry_conf.get("replay") or {}).get("redis", "")))
    rports = [p["port"] for p in named("Service", "ferry-redis")["spec"].get("ports", [])]
    need(url.hostname == "ferry-redis" and (url.port or 6379) in rports,
         "replay.redis names the Redis Service")
if "ferry-postgres" in sets:
    ct, paths = persisted(sets["ferry-postgres"])
    pgdata = {e["name"]: e.get("value") for e in ct.get("env", [])}.get(
        "PGDATA", "/var/lib/postgresql/data")
    need(any(pgdata == m or pgdata.startswith(m + "/") for m in paths),
         "PostgreSQL's data directory is on a PersistentVolumeClaim")
    pg_url = urlparse(base64.b64decode(secret.get("data", {}).get("postgres-url", "")).decode())
    need(pg_url.hostname == "ferry-postgres", "FERRY_POSTGRES_URL names the PostgreSQL Service")
for name in sets:
    rules = [r for np in by_kind["NetworkPolicy"]
             if np["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == name
             for r in np["spec"].get("ingress", [])]
    need(rules and all(r.get("from") and all(
        f.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "ferry"}
        and set(f) == {"podSelector"} for f in r["from"]) for r in rules),
        f"only Ferry's pods reach {name}")

# The ServiceMonitor example scrapes the metrics Service's port.
if len(sys.argv) > 3:
    (sm,) = [d for d in yaml.safe_load_all(open(sys.argv[3])) if d]
    mlabels = msvc["metadata"].get("labels", {})
    need(all(mlabels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
         "the ServiceMonitor selects the metrics Service")
    need(all(e.get("port") in [p.get("name") for p in msvc["spec"].get("ports", [])]
             and e.get("path") == "/metrics" for e in sm["spec"]["endpoints"]),
         "the ServiceMonitor scrapes /metrics on the metrics port")

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
