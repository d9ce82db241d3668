"""whisperless: serverless speech-to-text (faster-whisper + pyannote.audio) on AWS.

The data's path, and the sub-package that owns each step:

    S3 upload / API request / EventBridge event
      -> cloud.events       a typed job (ObjectJob, UrlJob) or a logged Skip
      -> cloud.runner       JobRunner: fetch the audio (cloud.netguard for URLs), once per job (idempotent)
      -> engine             decode once -> diarize -> transcribe -> merge -> the result document
      -> cloud.runner       conclude: write <key>.json (cloud.stores), finish the job record, call back
                            (cloud.webhooks)
    contract   what crosses every boundary: options, documents, renderings, key names (light)
    config     every environment variable, typed and validated (EngineSettings, Settings)
    local      the same functions on one machine: moto + the template's stack + an HTTP front
    cli        whisperless transcribe | serve | demo
"""

import os as _os
import sys as _sys
import warnings as _warnings

# OpenMP wait policy, read once by libgomp (torch's and CTranslate2's OpenMP runtime) when torch or
# ctranslate2 is first imported, so it is set here, before either. When a process holds more OpenMP
# threads than cores (CTranslate2's and torch's teams always do on small machines), libgomp cuts
# the spin before a waiting thread sleeps from 300k to 100 spins, and the many small parallel
# regions of Whisper decoding and pyannote's embeddings then pay a futex wake-up each. ACTIVE
# raises that to 1000 spins; GOMP_SPINCOUNT keeps the uncontended wait at libgomp's default (a few
# ms, not ACTIVE's minutes), so idle threads still sleep. On 2 dedicated cores (a Lambda, a
# container): transcription and diarization 1.7-1.85x faster. On cores shared with another busy
# process, spinning costs time slices instead: 0.78x (bench/threads.py --busy-cores 1); set
# OMP_WAIT_POLICY=PASSIVE there. A user's own setting wins.
# pyannote reads this when it is first imported, and phones home unless it is "false".
_os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    if {"torch", "ctranslate2"} & _sys.modules.keys():
        _warnings.warn(
            "whisperless was imported after torch or ctranslate2, whose OpenMP runtime has already read "
            "its settings: transcription and diarization can run up to ~1.8x slower on small machines. "
            "Import whisperless first, or set OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=300000.",
            RuntimeWarning,
            stacklevel=2,
        )
    _os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
    _os.environ["GOMP_SPINCOUNT"] = "300000"

__version__ = "0.1.0"
