"""The six fault scenarios of issue 20, each under steady load through the load balancer:

  a  Redis restarted empty, then every replica restarted
  b  kill -9 of one replica, restarted
  c  rolling restart: SIGTERM each replica in turn (default shutdown delay), restart it
  d  key-encryption-key rollout: one replica gets a new first KEK, keys rotate
  e  issuer outage under load: 500s, refused connections, hangs
  f  PostgreSQL outage under load

Before each fault some tokens are revoked (by jti, by a subject rule, reference handles)
and some assertions used; after it every replica is asked about them. `f` scales every
phase (1 for the short variant, 4 for --long).
"""

import os
import signal
import subprocess
import time
from collections import Counter

import checks
from load import Load, assertion, bearer_form, exchange_form, post, subject_token, token_of

from world import ERROR_TTL  # noqa: E402


def sleep_until(load: Load, t: float):
    d = t - load.now()
    if d > 0:
        time.sleep(d)


def must_token(env, form) -> str:
    for _ in range(20):
        a = post(env.proxy, "/token", form)
        t = token_of(a)
        if t:
            return t
        time.sleep(0.2)
    raise RuntimeError(f"could not obtain a token before the fault: {a.status} {a.body[:200]!r}")


def admin_revoke(replica, form) -> str:
    return post(replica.admin, "/revoke", form, timeout=10).status


class Marks:
    """What is revoked, kept and used before the fault."""

    def __init__(self, env):
        w = env.world
        self.revoked, self.live, self.jwts, self.assertions = [], [], [], []
        rs = env.replicas
        for i in range(3):
            t = must_token(env, exchange_form(subject_token(w, "chaos-revoked")))
            self.jwts.append(t)
            status = admin_revoke(rs[i % 3], {"token": t})
            if status != "200":
                raise RuntimeError(f"revoking a token before the fault answered {status}")
            self.revoked.append((f"jti#{i}", t))
        for i in range(2):
            t = must_token(env, exchange_form(subject_token(w, "chaos-rule")))
            self.jwts.append(t)
            self.revoked.append((f"rule#{i}", t))
        status = admin_revoke(rs[1], {"subject": "chaos-rule"})
        if status != "200":
            raise RuntimeError(f"revoking a subject before the fault answered {status}")
        for i in range(3):
            h = must_token(env, exchange_form(subject_token(w, "chaos-handle"), reference=True))
            if i < 2:
                status = admin_revoke(rs[(i + 2) % 3], {"token": h})
                if status != "200":
                    raise RuntimeError(f"revoking a handle before the fault answered {status}")
                self.revoked.append((f"handle#{i}", h))
            else:
                self.live.append((f"live-handle#{i}", h))
        for i in range(3):
            t = must_token(env, exchange_form(subject_token(w, "chaos-twin")))
            self.jwts.append(t)
            self.live.append((f"twin#{i}", t))
        for _ in range(18):
            a = assertion(w)
            must_token(env, bearer_form(a))
            self.assertions.append(a)
        # An extra token scenario f revokes while PostgreSQL is down.
        self.spare = must_token(env, exchange_form(subject_token(w, "chaos-outage")))
        self.jwts.append(self.spare)


def run(world, env, key: str, fault, f: float, rate: float) -> dict:
    marks = Marks(env)
    load = Load(world, env.proxy, rate).start()
    watch = checks.JwksWatch(env.replicas, load.now).start()
    extra = {"criteria": []}
    try:
        fault(world, env, load, f, marks, extra)
    finally:
        outcomes = load.finish()
        watch.finish()
    # Every replica is running again (the fault put them back); give them a moment.
    for r in env.replicas:
        r.wait_ready(30)
    time.sleep(0.5)
    jwks = checks.fetch_jwks(env.replicas)
    checks.self_check(must_token(env, exchange_form(subject_token(world, "chaos-self-check"))), jwks)
    tokens = [(o.token, o.done) for o in outcomes if o.token] + [(t, 0.0) for t in marks.jwts]
    unverifiable, then, end, kids = checks.verify_tokens(tokens, jwks, watch)
    lost, gone, errors = checks.revocation_figures(env.replicas, marks.revoked + extra.get("revoked", []),
                                                   marks.live)
    replays, replay_statuses = checks.replay_figures(env.replicas, marks.assertions)
    failed = Counter(f"{o.kind}:{o.status}" for o in outcomes if o.status != "200")
    fig = {
        "scenario": key,
        "sent": len(outcomes),
        "ok": sum(1 for o in outcomes if o.status == "200"),
        "failed": dict(failed),
        "tokens_checked": len(tokens),
        "unverifiable": unverifiable,
        "unverifiable_per_replica_when_issued": then,
        "unverifiable_per_replica_at_the_end": end,
        "jwks_fetched_per_replica": [len(x) for x in watch.snapshots],
        "signing_keys_seen": len(kids),
        "revocations_checked": len(marks.revoked) + len(extra.get("revoked", [])),
        "revocations_lost": len(lost),
        "revocations_lost_which": lost,
        "live_checked": len(marks.live),
        "live_lost": len(gone),
        "live_lost_which": gone,
        "introspection_errors": errors,
        "replays_tried": len(marks.assertions),
        "replays_accepted": replays,
        "replay_statuses": replay_statuses,
        **{k: v for k, v in extra.items() if k not in ("criteria", "revoked", "_post")},
    }
    crit = list(extra["criteria"])
    if "_post" in extra:
        crit += extra["_post"](outcomes, fig)
    crit.append(("zero tokens unverifiable against any replica's /jwks", unverifiable == 0))
    crit.append(("zero revocations lost", not lost))
    crit.append(("zero live reference handles or tokens lost", not gone))
    crit.append(("zero replays accepted", replays == 0))
    fig["criteria"] = [(name, bool(ok)) for name, ok in crit]
    return fig


def failures_between(load_outcomes, t0, t1):
    return [o for o in load_outcomes if t0 <= o.at <= t1 and o.status != "200"]


def restart(env, r, sig, wait_ready=True, down=0.0):
    r.signal(sig)
    took = r.wait_exit(60)
    time.sleep(down)
    r.start(wait=False)
    r.wait_ready(30)
    if wait_ready:
        env.wait_public_ready(r)
    return took


def redis_restart(world, env, load, f, marks, extra):
    sleep_until(load, 6 * f)
    env.redis.stop()
    env.redis.start()
    extra["redis_restarted_at"] = round(load.now(), 1)
    sleep_until(load, 12 * f)
    # Then every replica restarts (revocations must not live in process memory either).
    for r in env.replicas:
        r.signal(signal.SIGKILL)
    for r in env.replicas:
        r.wait_exit(10)
        r.start(wait=False)
    for r in env.replicas:
        r.wait_ready(30)
    sleep_until(load, 18 * f)


def kill_one(world, env, load, f, marks, extra):
    sleep_until(load, 6 * f)
    r = env.replicas[2]
    r.signal(signal.SIGKILL)
    r.wait_exit(10)
    sleep_until(load, 9 * f)
    r.start()
    env.wait_public_ready(r)
    sleep_until(load, 20 * f)


def rolling_restart(world, env, load, f, marks, extra):
    sleep_until(load, 3 * f)
    t0 = load.now()
    exits = []
    for r in env.replicas:
        # As in a Deployment's rollout the replacement comes up elsewhere: the old address
        # stays dead for 2 s, so only the readiness poll keeps requests away from it.
        exits.append(round(restart(env, r, signal.SIGTERM, down=2.0), 1))
        # As a Deployment's minReadySeconds: the balancer has seen it ready again.
        time.sleep(1.5)
    t1 = load.now()
    sleep_until(load, t1 + 3 * f)
    extra["rolling_window_s"] = (round(t0, 1), round(t1 + 3 * f, 1))
    extra["sigterm_to_exit_s"] = exits

    def post_check(outcomes, fig):
        failed = failures_between(outcomes, t0, t1 + 3 * f)
        fig["failed_during_rollout"] = dict(Counter(o.status for o in failed))
        return [("zero refused or failed requests during the rolling restart", not failed)]
    extra["_post"] = post_check


def cli_env(replica) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "RUST_LOG"))}
    return {**env, **replica.env}


def kek_rollout(world, env, load, f, marks, extra):
    sleep_until(load, 3 * f)
    a = env.replicas[0]
    a.signal(signal.SIGTERM)
    a.wait_exit(60)
    a.env = world.env(env.db, new_kek=True)
    env.write_config(a, ["FERRY_KEK_NEW", "FERRY_KEK"])
    a.start()
    rotated = []
    missing_after = None
    for n in range(1, 9):
        # The CLI with A's configuration, as an operator would rotate: the oldest standby
        # becomes active once published for jwks_max_age + leeway, and each new standby
        # is generated sealed with the first KEK of whoever generates it (the CLI here:
        # the new one, which B and C lack). Up to eight rotations, stopping early once
        # the key that signs is missing from some replica's /jwks (a second after the
        # rotation, long after every replica's ring poll): the state the issue found.
        deadline = time.monotonic() + 20
        while True:
            out = subprocess.run([world.ferry, "keys", "rotate", "--config", a.config],
                                 capture_output=True, text=True, env=cli_env(a))
            if out.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"ferry keys rotate kept failing: {out.stderr.strip()}")
            time.sleep(0.5)
        kid = out.stdout.strip().split()[1] if out.stdout.strip() else "?"
        rotated.append(kid)
        time.sleep(1)
        if any(kid not in (j or {}) for j in checks.fetch_jwks(env.replicas)):
            missing_after = n
            break
    extra["signing_key_missing_from_a_jwks_after_rotation"] = missing_after
    extra["rotated_to"] = rotated
    sleep_until(load, load.now() + 5 * f)

    def post_check(outcomes, fig):
        # Informational: item 3 wants this refused while a live replica lacks the new KEK.
        out = subprocess.run([world.ferry, "keys", "rewrap", "--config", a.config],
                             capture_output=True, text=True, env=cli_env(a))
        fig["rewrap_without_force"] = "refused" if out.returncode else "accepted"
        return []
    extra["_post"] = post_check


def issuer_outage(world, env, load, f, marks, extra):
    windows = []
    # Keys live 10 s at Ferry (refreshed in the background from 8 s on): a 10 s outage
    # contains every replica's refresh, whenever it last fetched; the 6 s between outages
    # (more than error_ttl) let every replica fetch fresh keys again.
    sleep_until(load, 3 * f)
    for mode in ("500", "refuse", "hang"):
        before_metrics = sum(r.metric("ferry_issuer_key_fetches_total") for r in env.replicas)
        before = world.idp_stats()
        t0 = load.now()
        world.idp(mode)
        sleep_until(load, t0 + 10 * f)
        after = world.idp_stats()
        after_metrics = sum(r.metric("ferry_issuer_key_fetches_total") for r in env.replicas)
        world.idp("ok")
        t1 = load.now()
        # Every download that fails stops at its first request (discovery, or the JWKS
        # when the discovery document is cached): requests received = fetches. A refused
        # connection reaches no handler, so only Ferry's own counter sees those.
        seen = (after["discovery"] + after["jwks"] - before["discovery"] - before["jwks"]
                if mode != "refuse" else None)
        counted = after_metrics - before_metrics
        if counted != counted:  # NaN: a replica's metrics could not be read
            raise RuntimeError("could not read ferry_issuer_key_fetches_total from every replica")
        fetches = max(seen or 0, counted)
        bound = len(env.replicas) * (int((t1 - t0) // ERROR_TTL) + 2)
        windows.append({"mode": mode, "seconds": round(t1 - t0, 1), "fetches_at_issuer": seen,
                        "fetches_counted_by_ferry": int(counted), "bound": bound,
                        "t": (t0, t1)})
        extra["criteria"].append((f"issuer fetches during {mode} ({int(fetches)}) within the error_ttl bound ({bound})",
                                  fetches <= bound))
        sleep_until(load, t1 + 6 * f)
    extra["issuer_windows"] = windows

    def post_check(outcomes, fig):
        for w in fig["issuer_windows"]:
            w["failed_requests"] = len(failures_between(outcomes, *w.pop("t")))
        return []
    extra["_post"] = post_check


def postgres_outage(world, env, load, f, marks, extra):
    sleep_until(load, 5 * f)
    t0 = load.now()
    world.pg.stop()
    sleep_until(load, t0 + 2)
    status = admin_revoke(env.replicas[0], {"token": marks.spare})
    extra["revoke_during_outage"] = status
    if status == "200":
        # Acknowledged: it must hold everywhere afterwards.
        extra.setdefault("revoked", []).append(("revoked-during-outage", marks.spare))
    sleep_until(load, t0 + 8 * f)
    world.pg.start()
    t1 = load.now()
    sleep_until(load, t1 + 5 * f)
    extra["postgres_down_s"] = round(t1 - t0, 1)
    extra["criteria"].append(("/revoke answers 503 while the durable store is down", status == "503"))

    def post_check(outcomes, fig):
        failed = failures_between(outcomes, t0, t1)
        fig["failed_while_down"] = dict(Counter(o.status for o in failed))
        return [("signing continues while PostgreSQL is down (zero failed exchanges)", not failed)]
    extra["_post"] = post_check


# Keys rotate every 8 s (so every fault meets rotations), except during the KEK rollout,
# where the operator rotates by hand and no replica's schedule interleaves.
ROTATION = {"d": "1h"}

SCENARIOS = {
    "a": ("Redis restarted empty, then every replica", redis_restart),
    "b": ("kill -9 of one replica, restarted", kill_one),
    "c": ("rolling restart (SIGTERM each replica in turn)", rolling_restart),
    "d": ("KEK rollout: one replica gets a new first KEK, keys rotate", kek_rollout),
    "e": ("issuer outage under load: 500s, refused connections, hangs", issuer_outage),
    "f": ("PostgreSQL outage under load", postgres_outage),
}
