"""Ferry's fault scenarios (issue 20), run as an operator would: three replicas sharing
PostgreSQL and Redis behind a round-robin load balancer that follows /readyz, a
misbehaving issuer, steady load, and one fault per scenario. Prints per scenario what
was sent, what succeeded, what failed (by status), how many tokens failed verification
against any replica's /jwks, how many revocations and replay protections were lost, and
the issuer fetches against the error_ttl bound; exits 1 when any "Done when" criterion
fails. Started by scripts/chaos.sh (which ends every process it started on exit).

    chaos.py --work DIR --ferry BIN [--long] [--only abc] [--rate N] [--json FILE]
"""

import argparse
import json
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import scenarios  # noqa: E402
import world as world_mod  # noqa: E402


def fmt_failed(failed: dict) -> str:
    if not failed:
        return "-"
    merged = {}
    for k, v in failed.items():
        status = k.split(":", 1)[1]
        merged[status] = merged.get(status, 0) + v
    return " ".join(f"{k}×{v}" for k, v in sorted(merged.items()))


def report(fig: dict):
    print(f"\n--- scenario {fig['scenario']}: {fig['title']} ({fig['seconds']}s)")
    keys = [k for k in fig if k not in ("scenario", "title", "criteria", "seconds")]
    for k in keys:
        print(f"    {k}: {fig[k]}")
    for name, ok in fig["criteria"]:
        print(f"    [{'ok' if ok else 'FAIL'}] {name}")
    sys.stdout.flush()


def table(figs: list):
    head = ("scenario", "sent", "ok", "failed by status", "unverif.", "revoc. lost", "live lost",
            "replays acc.", "issuer fetches/bound", "verdict")
    rows = []
    for fig in figs:
        if "error" in fig:
            rows.append((fig["scenario"], "-", "-", fig["error"][:40], "-", "-", "-", "-", "-", "ERROR"))
            continue
        fetches = "-"
        if fig.get("issuer_windows"):
            fetches = " ".join(
                f"{w['mode']}:{max(w['fetches_at_issuer'] or 0, w['fetches_counted_by_ferry'])}/{w['bound']}"
                for w in fig["issuer_windows"])
        rows.append((
            fig["scenario"], str(fig["sent"]), str(fig["ok"]), fmt_failed(fig["failed"]),
            f"{fig['unverifiable']}/{fig['tokens_checked']}",
            f"{fig['revocations_lost']}/{fig['revocations_checked']}",
            f"{fig['live_lost']}/{fig['live_checked']}",
            f"{fig['replays_accepted']}/{fig['replays_tried']}", fetches,
            "pass" if all(ok for _, ok in fig["criteria"]) else "FAIL"))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    print("\n" + line(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--ferry", required=True)
    ap.add_argument("--long", action="store_true", help="four times longer phases, 50 requests/s")
    ap.add_argument("--only", default="abcdef")
    ap.add_argument("--rate", type=float)
    ap.add_argument("--json")
    args = ap.parse_args()
    factor = 4 if args.long else 1
    rate = args.rate or (50 if args.long else 30)

    started = time.monotonic()
    w = world_mod.World(args.work, args.ferry)
    figs = []
    try:
        w.detect_revocation_section()
        print(f"==> chaos: {'long' if args.long else 'short'} variant, {rate:g} requests/s, "
              f"revocation settings: {w.revocation or '(none)'}; work dir {args.work}")
        for key in args.only:
            title, fault = scenarios.SCENARIOS[key]
            print(f"==> scenario {key}: {title}")
            sys.stdout.flush()
            t = time.monotonic()
            env = None
            try:
                w.idp("ok")
                env = world_mod.Env(w, f"scenario-{key}", rotation=scenarios.ROTATION.get(key, "8s"))
                fig = scenarios.run(w, env, key, fault, factor, rate)
            except Exception as e:  # a scenario that cannot run fails the run, visibly
                traceback.print_exc()
                fig = {"scenario": key, "error": f"{type(e).__name__}: {e}", "criteria": [("ran", False)]}
                if w.pg.proc is None:
                    w.pg.start()
            finally:
                if env is not None:
                    env.teardown()
            fig["title"] = title
            fig["seconds"] = round(time.monotonic() - t)
            figs.append(fig)
            report(fig)
    finally:
        if w.pg.proc is not None:
            w.pg.proc.send_signal(signal.SIGQUIT)  # immediate shutdown: nothing to keep
            w.pg.proc.wait()
            w.pg.proc = None
        w.procs.stop_all()
    table(figs)
    failed = [f["scenario"] for f in figs if not all(ok for _, ok in f["criteria"])]
    print(f"\nchaos: {len(figs) - len(failed)} scenario(s) passed, {len(failed)} failed "
          f"({', '.join(failed) or 'none'}), {time.monotonic() - started:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figs, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
