"""notify: the run's summary email to the referral recipients; skipped when nothing changed."""

from __future__ import annotations

from shared.notifications import send_summary

DOMAIN = "referral"


def changed_anything(results: dict[str, dict]) -> bool:
    c, p, m = results["candidates"], results["positions"], results["matches"]
    return bool(c["changed"] or p["changed"] or c["rejected"] or p["rejected"]
                or c["resolved"] or p["resolved"]
                or results["candidate_embeddings"]["embedded"] or results["position_embeddings"]["embedded"]
                or m["new_matches"] or m["retired_matches"] or m["updated_matches"])


def summary_facts(results: dict[str, dict]) -> dict[str, object]:
    c, p, m = results["candidates"], results["positions"], results["matches"]
    return {
        "candidates synced": f"{c['changed']} ({c['inserted']} new, {c['updated']} updated, {c['deleted']} deleted)",
        "positions synced": f"{p['changed']} ({p['inserted']} new, {p['updated']} updated, {p['deleted']} deleted)",
        "records rejected": c["rejected"] + p["rejected"],
        "rejected now loaded": c["resolved"] + p["resolved"],
        "rejected still open": c["unresolved"] + p["unresolved"],
        "candidates embedded": results["candidate_embeddings"]["embedded"],
        "positions embedded": results["position_embeddings"]["embedded"],
        "new matches": m["new_matches"],
        "retired matches": m["retired_matches"],
        "match threshold": m["threshold"],
    }


def send_run_summary(run_id: str, results: dict[str, dict]) -> list[str]:
    top = [{"candidate": t["candidate"], "position": t["position"], "score": t["score"]}
           for t in results["matches"]["top"]]  # column order for people (XCom sorts keys)
    return send_summary(DOMAIN, f"Bullhorn sync {run_id}", summary_facts(results), {"Top new matches": top})
