# whisperless first: it sets the OpenMP wait policy that torch and ctranslate2 read when they load.
import whisperless  # noqa: F401
