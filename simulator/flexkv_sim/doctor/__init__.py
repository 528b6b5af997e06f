"""The doctor: the operator guide's troubleshooting as an analysis of a scenario.

::

    report = diagnose(load_scenario("scenarios/tuning/capacity-before.yaml"))
    print(render_text(report))
"""

from .analysis import DOCTOR_SCHEMA_VERSION, Doctor, diagnose
from .render import effect, render_text, write_doctor_dir
from .rules import GRADES, grade, nice_blocks, tier_memory
from .transfer_rules import BLOCK_LIMITS_S

__all__ = [
    "BLOCK_LIMITS_S",
    "DOCTOR_SCHEMA_VERSION",
    "GRADES",
    "Doctor",
    "diagnose",
    "effect",
    "grade",
    "nice_blocks",
    "render_text",
    "tier_memory",
    "write_doctor_dir",
]
