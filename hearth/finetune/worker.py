"""``python -m hearth.finetune.worker HEARTH_HOME JOB_ID [--resume]``: run one job, detached.

Started by :meth:`hearth.finetune.jobs.JobStore.spawn`; its output goes to the job's log.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from hearth.config import get_settings
from hearth.errors import HearthError
from hearth.finetune.jobs import JobStore


def main(argv: list[str]) -> int:
    home, job_id = Path(argv[0]), argv[1]
    settings = replace(get_settings(), home=home)
    try:
        status = JobStore(settings).run(job_id, resume="--resume" in argv[2:])
    except HearthError:
        return 1  # already written to the job's status and log
    return 0 if status.status in ("succeeded", "rejected", "cancelled", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
