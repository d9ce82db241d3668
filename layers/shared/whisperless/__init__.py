"""whisperless: serverless speech-to-text (faster-whisper + pyannote.audio) on AWS."""

__version__ = "0.1.0"
