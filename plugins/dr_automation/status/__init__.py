"""The DR status board: one page in the Airflow UI answering "where are we?" during an incident.

Modules: ``snapshot`` (``status_snapshot``: every figure gathered from where the bundle keeps it,
each section on its own so one unreachable source never blanks the page), ``airflow_state``
(pending approvals and latest runs, read from Airflow's metadata inside the api-server, limited to
the DAGs the signed-in user may read), ``page`` (the HTML page: plain SVG charts, no JavaScript)
and ``app`` (the plugin's FastAPI app: the page and its JSON API, behind Airflow's authentication).

Where each figure comes from (the contract this board reads):

- serving region: what the resolvers in ``route53.verify_nameservers`` answer for
  ``route53.record_name`` now (truth as clients see it); beside it Route 53's control plane
  (``route53_plan.routing_view``) and ``state/serving-region.json`` in the backup buckets;
- health: ``dr_region_health`` in the audit database (``health.history``);
- backups: the newest ``backups/<tier>/<backup id>/manifest.json`` in the tier's home location;
- verified RPO: ``verification/state.json`` in the primary region's backup bucket
  (``verification.settings.STATE_KEY``); absent -> "not verified yet";
- failovers: ``reports/failovers/<failover id>.json`` in every region's backup bucket;
- drills: ``reports/drills/<drill id>.json`` in the primary region's backup bucket
  (``DRILLS_PREFIX``; see ``snapshot.drill_entry`` for the fields read); absent -> "no drill yet";
- pending approvals: Airflow's HITL details without a response (``airflow_state``).
"""

from __future__ import annotations

DRILLS_PREFIX = "reports/drills/"
FAILOVERS_PREFIX = "reports/failovers/"
