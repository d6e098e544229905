"""scripts/predict.py, except that the process of rank $DIE_RANK kills itself (SIGKILL, no cleanup)
when it starts scoring its chunk number $DIE_AT: a crashed or OOM-killed process, for the tests."""

import os
import signal
import sys

from pipelines.cli.predict import main
from pipelines.prediction.classifier import Classifier

if os.environ.get("RANK", "0") == os.environ["DIE_RANK"]:
    real, calls = Classifier.score, []

    def dying(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == int(os.environ["DIE_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *args, **kwargs)

    Classifier.score = dying

sys.exit(main())
