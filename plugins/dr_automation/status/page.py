"""The status board page: server-rendered HTML with plain SVG charts and no JavaScript.

It refreshes itself (``<meta http-equiv="refresh">``), so a wall screen or an operator's tab stays
current without scripts. Links to Airflow pages open in the top window (the page is shown in the
Airflow UI's frame); figures carry ``data-*`` attributes so tests (and people) can read them exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from dr_automation.charts import objective_bars

REFRESH_SECONDS = 15
_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1f2933;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:20px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%} td,th{padding:4px 8px;border-bottom:1px solid #eee;
text-align:left;font-size:13px;vertical-align:middle} th{color:#52606d;font-weight:600}
.big{font-size:28px;font-weight:700} .ok{color:#1b7f3b} .bad{color:#c62828} .warn{color:#b26a00}
.muted{color:#7b8794;font-size:12px} .err{color:#c62828;font-size:12px} a{color:#1565c0}
.drill-charts{display:flex;flex-wrap:wrap;gap:16px} .drill-failed{font-size:13px;font-weight:600}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#eef2f7}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _link(href: str | None, text: Any, base: str, *, cls: str = "") -> str:
    if not href:
        return _e(text)
    url = href if href.startswith("http") else base + href
    klass = f' class="{cls}"' if cls else ""
    target = "_blank" if href.startswith("http") else "_top"
    return f'<a{klass} href="{_e(url)}" target="{target}" rel="noopener">{_e(text)}</a>'


def _error(section: Any) -> str | None:
    if isinstance(section, Mapping) and "error" in section:
        return f'<p class="err">unavailable: {_e(section["error"])}</p>'
    return None


def _num(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"


def sparkline(
    series: Sequence[Mapping[str, Any]], *, threshold: float, width: int = 260, height: int = 44
) -> str:
    """Score (0..1) over time as an SVG polyline, with the healthy threshold dashed."""
    pts = [p for p in series if p.get("score") is not None]
    th_y = round((1 - threshold) * (height - 4) + 2, 1)
    parts = [
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="health score history"><rect width="{width}" height="{height}" fill="#f7f9fb"/>',
        f'<line x1="0" x2="{width}" y1="{th_y}" y2="{th_y}" stroke="#b26a00" stroke-dasharray="3 3"/>',
    ]
    if pts:
        step = width / max(len(pts) - 1, 1)
        coords = " ".join(
            f"{round(i * step, 1)},{round((1 - float(p['score'])) * (height - 4) + 2, 1)}"
            for i, p in enumerate(pts)
        )
        parts.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{coords}"/>')
        for i, p in enumerate(pts):
            if not p.get("healthy"):
                x, y = round(i * step, 1), round((1 - float(p["score"])) * (height - 4) + 2, 1)
                parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="#c62828"/>')
    parts.append("</svg>")
    return "".join(parts)


def _serving(s: Any, base: str) -> str:
    err = _error(s)
    if err:
        return err
    region = s.get("region")
    dns = s["dns"]
    r53 = s.get("route53") or {}
    recorded = s.get("recorded") or {}
    answers = ", ".join(
        f"{ns} → {', '.join(a) if isinstance(a, list) else a.get('error')}"
        for ns, a in dns["answers"].items()
    )
    return (
        f'<div id="serving" data-region="{_e(region)}" data-addresses="{_e(" ".join(dns["addresses"]))}">'
        f'<span class="big {"ok" if region else "bad"}">{_e(region or "no single answer")}</span> '
        f'<span class="muted">serves {_e(s["record_name"])} (what DNS answers now: {_e(answers) or "no resolver"})'
        "</span><br>"
        f'<span class="muted">Route 53: {_e(r53.get("mode", r53.get("error")))}, '
        f"routes to {_e(r53.get('serving_region'))}"
        f"{' (inverted: ' + _e(', '.join(r53['inverted_checks'])) + ')' if r53.get('inverted_checks') else ''}"
        f" · recorded by the last failover: {_e(recorded.get('serving_region', 'none'))}"
        f" since {_e(recorded.get('since', '—'))}</span><br>"
        f"{_link(s['links']['setup'], 'dns_failover_setup', base)} · "
        f"{_link(s['links']['failover'], 'regional_failover', base)}</div>"
    )


def _regions(regions: Any, threshold: float, minutes: int, base: str) -> str:
    err = _error(regions)
    if err:
        return err
    rows = []
    for r in regions:
        score = r["score"]
        cls = "muted" if score is None else ("ok" if r["healthy"] else "bad")
        rows.append(
            f'<tr class="region" data-region="{_e(r["region"])}" data-score="{_e(score)}" '
            f'data-checked-at="{_e(r["checked_at"])}" data-cycles="{r["cycles"]}">'
            f"<td><b>{_e(r['region'])}</b> <span class='pill'>{_e(r['role'])}</span></td>"
            f'<td class="{cls} score">{_num(score, 2)}</td>'
            f"<td>{'healthy' if r['healthy'] else ('unhealthy' if r['healthy'] is False else 'no data')}"
            f"{'' if not r['consecutive_failures'] else ' (' + str(r['consecutive_failures']) + ' failed in a row)'}</td>"
            f"<td>{sparkline(r['series'], threshold=threshold)}</td>"
            f"<td class='muted'>{_e(r['checked_at'] or '—')}<br>"
            f"{_link(r['links']['monitor'] or r['links']['dag'], 'monitor run' if r['links']['monitor'] else 'region_health_monitor', base)}</td></tr>"
        )
    return (
        f"<table><tr><th>region</th><th>score</th><th>state</th><th>last {minutes} min (dashed: healthy at "
        f"{threshold:g})</th><th>checked</th></tr>{''.join(rows)}</table>"
    )


def _tiers(tiers: Any, base: str) -> str:
    err = _error(tiers)
    if err:
        return err
    rows = []
    for t in tiers:
        b, v = t["last_backup"], t["verification"]
        if isinstance(b, Mapping) and "error" in b:
            backup = f'<span class="err">{_e(b["error"])}</span>'
        elif not b:
            backup = '<span class="muted">no backup yet</span>'
        else:
            cls = "ok" if b["status"] == "complete" and t["backup_within_rpo"] else "bad"
            backup = (
                f'<span class="{cls}">{_e(b["status"])}</span> {_num(b["age_minutes"])} min ago · '
                f"{_e(b['succeeded'])}/{_e(b['components'])} systems"
                f"{' · failed: ' + _e(', '.join(b['failed'])) if b['failed'] else ''}<br>"
                f"{_link(b['run_link'], 'run', base)} · {_link(b['console'], 'manifest', base)}"
            )
        if v.get("verified_rpo_minutes") is not None:
            cls = "bad" if v.get("breached") else "ok"
            verified = (
                f'<span class="{cls}">{_num(v["verified_rpo_minutes"])} min</span> vs {v["rpo_minutes"]} min '
                f"{_link(v.get('run_link'), 'verify run', base)}"
            )
        else:
            verified = f'<span class="warn">{_e(v.get("status"))}</span> <span class="err">{_e(v.get("error") or "")}</span>'
        rows.append(
            f'<tr class="tier" data-tier="{_e(t["tier"])}" data-verified="{_e(v.get("status"))}" '
            f'data-backup-id="{_e((b or {}).get("backup_id") if isinstance(b, Mapping) else "")}">'
            f"<td>{_link(t['links']['dag'], t['tier'], base)}<br><span class='muted'>{_e(t['schedule'])}</span></td>"
            f"<td>{t['rpo_minutes']} min</td><td>{backup}</td><td>{verified}</td></tr>"
        )
    return (
        "<table><tr><th>tier</th><th>RPO objective</th><th>last backup</th><th>verified RPO</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _approvals(approvals: Any, base: str) -> str:
    err = _error(approvals)
    if err:
        return err
    if not approvals:
        return '<p class="muted" id="approvals-none">no approval pending</p>'
    items = [
        f'<li class="approval" data-dag="{_e(a["dag_id"])}" data-run="{_e(a["run_id"])}">'
        f"<b>{_e(a['subject'])}</b> · {_link(a['run_link'], a['dag_id'] + ' / ' + a['run_id'], base)} · "
        f"waiting since {_e(a['created_at'])} · {_link(a['answer_link'], 'answer', base, cls='answer')}"
        f"{' · approvers: ' + _e(', '.join(a['assignees'])) if a['assignees'] else ''}</li>"
        for a in approvals
    ]
    return f"<ul>{''.join(items)}</ul>"


def _failovers(section: Any, base: str) -> str:
    err = _error(section)
    if err:
        return err
    records = section["records"]
    if not records:
        return '<p class="muted">no failover yet</p>'
    rows = [
        f'<tr class="failover" data-outcome="{_e(f["outcome"])}"><td class="muted">{_e(f["at"])}</td>'
        f'<td class="{"ok" if f["outcome"] in ("success", "dry_run") else "bad"}">{_e(f["outcome"])}</td>'
        f"<td>→ {_e(f['target_region'])} ({_e(f['mode'])})</td><td>{_e(f['requested_by'])}: {_e(f['reason'])}"
        f"</td><td>{_link(f['run_link'], 'run', base)} · {_link(f['console'], 'record', base)}</td></tr>"
        for f in records
    ]
    return f"<table><tr><th>when</th><th>outcome</th><th>to</th><th>who / why</th><th></th></tr>{''.join(rows)}</table>"


def _drills(section: Any, base: str) -> str:
    err = _error(section)
    if err:
        return err
    drills = section["drills"]
    out = [
        f'<p class="warn" id="drill-under-way" data-drill="{_e(u["drill_id"])}">drill under way: '
        f"<b>{_e(u['scenario'])}</b> ({_e(u['drill_id'])}) since {_e(u['registered_at'])} · "
        f"{_link(u['run_link'], 'run', base)} · its drill records and the drill stack may be failing on "
        "purpose; production is not touched</p>"
        for u in section.get("under_way") or []
    ]
    if not drills:
        none = f'<p class="muted" id="drills-none">no drill yet (reports are read from {_e(section["location"])})</p>'
        return "".join(out) + none
    for d in drills:
        sc = d["scenarios"]
        failed = [s["scenario"] for s in sc if s.get("passed") is False]
        out.append(
            f'<div class="drill" data-drill="{_e(d["drill_id"])}"><b>{_e(d["drill_id"])}</b> '
            f"<span class='muted'>{_e(d['finished_at'])} · success {_e(d['success_rate'])} · readiness "
            f"{_e(d['readiness'])} · {_link(d['run_link'], 'run', base)} · {_link(d['console'], 'report', base)}</span>"
            + (f' <span class="bad drill-failed">failed: {_e(", ".join(failed))}</span>' if failed else "")
            + "<div class='drill-charts'>"
            + objective_bars(
                [(s["scenario"], s["rto_minutes"], s["rto_objective_minutes"]) for s in sc], title="RTO"
            )
            + objective_bars(
                [(s["scenario"], s["rpo_minutes"], s["rpo_objective_minutes"]) for s in sc], title="RPO"
            )
            + "</div></div>"
        )
    return "".join(out)


def _dags(dags: Any, base: str) -> str:
    err = _error(dags)
    if err:
        return err
    if not dags:
        return '<p class="muted">no runs yet</p>'
    cells = [
        f"<tr><td>{_link(r.get('dag_link'), dag_id, base)}</td><td>{_link(r.get('run_link'), r['run_id'], base)}</td>"
        f'<td class="{"ok" if r["state"] == "success" else ("bad" if r["state"] == "failed" else "warn")}">'
        f"{_e(r['state'])}</td><td class='muted'>{_e(r.get('start_date'))}</td></tr>"
        for dag_id, r in sorted(dags.items())
    ]
    return f"<table><tr><th>DAG</th><th>latest run</th><th>state</th><th>started</th></tr>{''.join(cells)}</table>"


def render_page(snapshot: Mapping[str, Any], *, ui_base: str = "", threshold: float = 0.8) -> str:
    """The whole page for one snapshot (ui_base: the Airflow UI's path prefix, '' at the root)."""
    base = ui_base.rstrip("/")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'><title>DR status</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>DR status · {_e(snapshot['organization'])}</h1>"
        f"<p class='muted' id='generated' data-generated='{_e(snapshot['generated_at'])}'>as of "
        f"{_e(snapshot['generated_at'])} UTC · refreshes every {REFRESH_SECONDS} s · "
        f"<a href='api/status' target='_blank'>JSON</a></p>"
        f"<h2>Serving region</h2>{_serving(snapshot['serving'], base)}"
        f"<h2>Pending approvals</h2>{_approvals(snapshot['approvals'], base)}"
        f"<h2>Region health</h2>{_regions(snapshot['regions'], threshold, snapshot['history_minutes'], base)}"
        f"<h2>Backups and verified RPO</h2>{_tiers(snapshot['tiers'], base)}"
        f"<h2>Failover history</h2>{_failovers(snapshot['failovers'], base)}"
        f"<h2>Drills: RTO / RPO against objectives</h2>{_drills(snapshot['drills'], base)}"
        f"<h2>Runs behind these figures</h2>{_dags(snapshot['dags'], base)}"
        "</body></html>"
    )
