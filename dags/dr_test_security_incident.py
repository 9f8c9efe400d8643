"""Security incident drill: a credential is compromised; rotate, revoke, restore from immutable backups.

**What it does** (only on resources it makes, named `dr-drill-security-incident-<hash>` and tagged
`leanvibe:drill=<drill id>`):

1. *setup*: an IAM user with one access key (the credential that will leak) and a scoped inline policy;
   a Secrets Manager secret holding that key, a generated API token and the application's settings;
   an **Object Lock** bucket (GOVERNANCE mode, 1-day retention) with an immutable backup of the
   settings and a generated drill dataset, and a manifest of every object's version id and SHA-256.
2. *inject*: the key leaks; the "attacker" uses it to tamper with the secret, overwrite and delete the
   backup objects and delete their locked versions. Each attempt and the real answer is recorded.
3. *recover*: detect the tampering (secret hash against the manifest, versions the manifest does not
   know), decide (the acting key is the drill's key), rotate the secret (new key, new token: a new
   version), revoke the compromised key (deactivate, delete, prove it is no longer listed), restore
   settings and data from the locked versions (each checked against the manifest first).
4. *verify*: every locked version still exists and its SHA-256, recomputed from its bytes, matches the
   manifest; lock mode and retention unchanged; current data and the secret's settings equal the
   backup; the compromised key is gone from IAM.
5. *measure* / *cleanup*: figures below; the bucket (every version, bypassing governance), the secret
   (no recovery window) and the IAM user (keys, policies) are deleted, found from the drill id alone.

**Why GOVERNANCE, not COMPLIANCE**: a COMPLIANCE-mode version cannot be deleted by anyone, root
included, until its retention date; a drill bucket in COMPLIANCE mode would stay for the whole
retention. GOVERNANCE refuses the attacker (who lacks `s3:BypassGovernanceRetention`) and still lets
the drill's cleanup remove the bucket at once. Production backups use the archive buckets' own mode.

**Reading the result** (`s3://<primary backup bucket>/drills/results/dr_test_security_incident/<run>.json`):
`rto_seconds` is incident to verified; `rpo_seconds` the age of the immutable backup at the incident;
`integrity_score` the share of locked backup objects (and the manifest) that verified; `phases` detect,
decide, restore, verify; `figures`: attempts made/refused/accepted and which were refused, versions
checked, rotation and revocation seconds, how IAM answered for the revoked key.

**Forced fault** `remove_backup`: right after setup the drill deletes its backup's locked versions
(bypassing governance, as a broken retention setting would allow); recover fails with a reason naming
the missing object; cleanup still removes everything.

**Simulated** (see the result's `simulated`): in the sandbox the AWS emulator (moto) does not evaluate
IAM, so the leaked key's policy is not enforced and revocation is proven by IAM no longer knowing the
key; it refuses deleting locked versions for real but not retention shortening or versioning
suspension, which the attacker therefore does not try; CloudTrail's part (who did what) is the
drill's own record of the attacker's calls.

(An Airflow DAG: manual, REST or triggered by `dr_test_quarterly`.)
"""

from dr_automation.drills.dag import build_scenario_dag
from dr_automation.estate import load_estate

build_scenario_dag(load_estate(), "security_incident", schedule=None, doc_md=__doc__)
