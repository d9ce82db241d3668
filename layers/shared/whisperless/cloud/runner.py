"""The job runner: one job from S3 (or a URL) to a result next to the audio, a job record and a
signed callback. Shared by the transcriber Lambda handler, the plain queue worker
(``python -m whisperless.cloud.worker``) and the local stack.

    fetch (the S3 object, or the URL into the bucket first) -> engine -> conclude:
    write the renderings asked for (``formats``) and the result (one PUT each) -> finish the job
    record -> publish the job's EventBridge event -> call back

Failure policy:
- the input's fault (bad audio, bad parameters, unsafe URL): the failed document is written and
  called back; the job is done, so the queue does not spin on it;
- our infrastructure's fault (S3, DynamoDB, network to S3): raise, so the message comes back and,
  after the queue's max receives, lands in the dead-letter queue; on that last delivery the user
  still gets a failed document and callback (``retries_exhausted``).
Duplicates (S3 and SQS deliver at least once) are absorbed by Powertools Idempotency keyed on
bucket, key, ETag and version: one result write, one callback.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..contract.documents import failed_document
from ..contract.languages import abilities_from_name, check_supported
from ..contract.metadata import BOOKKEEPING, CALLBACK, JOB_ID, VOICE_REFERENCES, read_metadata, upload_metadata
from ..contract.naming import JOB_ID_PATTERN, job_id_for, result_key
from ..contract.options import TranscriptionOptions, parse_formats
from ..contract.speakers import MAX_KNOWN_SPEAKERS, REFERENCES_FIELD, bucket_owner, reference_key
from ..errors import AudioError, Interrupted, InvalidParameter, WhisperlessError
from .callbacks import Callbacks
from .context import LambdaContext
from .eventbus import EventBus, job_event
from .events import ChunkJob, LongJob, MergeJob, ObjectJob, RequestedJob, Skip, UrlJob
from .metrics import record_job_metrics
from .stores import JobStore, ResultStore, audio_identity, check_output_keys, storage_refusal
from .voices import VoiceRunner, VoiceStore, VoiceTask, embeddings

log = logging.getLogger(__name__)

#: A job's lock when no Lambda context says otherwise (the function's timeout).
DEFAULT_JOB_SECONDS = 900.0
#: Pauses between attempts at a url whose server is down or failing (no connection, a timeout,
#: 5xx, 408, 429): a server back within a minute is caught, a dead one fails the job after four
#: attempts in about a minute. (Left to the queue, it was retried for 90 minutes, silently.)
DOWNLOAD_BACKOFF_SECONDS = (5.0, 15.0, 40.0)


@dataclass(frozen=True)
class Attempt:
    """One delivery of a job: what Powertools Idempotency keys and stores."""

    job: ObjectJob | UrlJob | RequestedJob | ChunkJob | MergeJob
    final: bool = False  # the message's last delivery: a failure now is told to the user


class UrlUnreachable(WhisperlessError):
    """The url's server kept failing (down, timing out, 5xx) through every attempt."""

    code = "url_unreachable"
    caller_fault = True


class GaveUp(WhisperlessError):
    """A passing failure that outlasted the queue's redeliveries."""

    code = "retries_exhausted"

    def __init__(self, cause: BaseException, attempts: int):
        summary = error_summary(cause)
        super().__init__(f"gave up after {attempts} attempts; last error: {summary['code']}: {summary['message']}")


class ChunkFailed(WhisperlessError):
    """One chunk of a long job failed: the job's document names the chunk and the reason."""

    code = "chunk_failed"

    def __init__(self, job: ChunkJob, cause: BaseException):
        self.index = job.index
        summary = error_summary(cause)
        start = job.index * job.job.chunk_seconds
        super().__init__(
            f"chunk {job.index + 1} of {job.job.total} (from {start:.0f} s) failed: "
            f"{summary['code']}: {summary['message']}"
        )


@dataclass(frozen=True)
class FannedOut:
    """A long job handed to its chunk tasks: no document yet (the merge writes it)."""

    total: int


def error_summary(exc: BaseException) -> dict[str, str]:
    """{code, message} for a failure: ours, or the AWS error code when there is one."""
    if isinstance(exc, WhisperlessError):
        return {"code": exc.code, "message": exc.message[:500]}
    response = getattr(exc, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    return {"code": str(code or type(exc).__name__), "message": str(exc)[:500] or type(exc).__name__}


class JobRunner:
    def __init__(
        self,
        *,
        s3,
        dynamodb,
        settings: Settings,
        engine=None,
        metrics=None,
        events=None,
        sqs=None,
        callback_sleep: Callable[[float], None] = time.sleep,
        callback_timeout: tuple[float, float] = (5, 15),
        download_backoff: Sequence[float] = DOWNLOAD_BACKOFF_SECONDS,
    ):
        self.s3 = s3
        self.download_backoff = tuple(download_backoff)
        # Set when the process is stopping and the running job's grace period is over: the engine
        # stops at its next checkpoint and the job is put back (Interrupted), not failed.
        self.stopping = threading.Event()
        self.settings = settings
        self.jobs = JobStore(dynamodb.Table(settings.jobs_table), ttl_days=settings.job_ttl_days)
        self.results = ResultStore(s3)
        self.callbacks = Callbacks(sleep=callback_sleep, timeout=callback_timeout)
        self._engine = engine
        self.metrics = metrics
        import boto3

        # Chunk and merge tasks of long jobs go to the job queue (none configured: no split).
        self._sqs = sqs or (boto3.client("sqs") if settings.queue_url else None)

        # The job's EventBridge event goes to the deployment's bus (none configured: no event).
        self.bus = EventBus(events or boto3.client("events"), settings.event_bus) if settings.event_bus else None
        # Powertools writes low-level items; the resource's own client would re-serialise them,
        # so it gets a plain client on the same endpoint.
        resource_client = dynamodb.meta.client
        self._dynamodb_client = boto3.client(
            "dynamodb", region_name=resource_client.meta.region_name, endpoint_url=resource_client.meta.endpoint_url
        )
        self._object_runner = self._idempotent(
            self._process_object, "[job.bucket, job.key, job.etag, job.version_id]", "object"
        )
        self._url_runner = self._idempotent(self._process_url, "job.job_id", "url")
        self._request_runner = self._idempotent(self._process_request, "job.job_id", "requested")
        # Enrolled voices (speakers by name); none configured: knownSpeakers is refused.
        self.voices = VoiceStore(dynamodb.Table(settings.voices_table)) if settings.voices_table else None
        self._chunk_runner = self._idempotent(self._process_chunk, "[job.job.job_id, job.index]", "chunk")
        self._merge_runner = self._idempotent(self._process_merge, "job.job.job_id", "merge")

    def interrupt(self) -> None:
        """Stop the running job at the engine's next checkpoint (seconds); its message comes back."""
        self.stopping.set()

    @property
    def engine(self):
        if self._engine is None:
            from ..engine import Engine

            self._engine = Engine()
        return self._engine

    # -- idempotency -------------------------------------------------------------------
    def _idempotent(self, func: Callable[[Attempt], dict], key_expression: str, prefix: str):
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        config = IdempotencyConfig(
            event_key_jmespath=key_expression, raise_on_no_idempotency_key=True, expires_after_seconds=24 * 3600
        )
        # One persistence layer per config: a shared one keeps the first config's key expression.
        store = DynamoDBPersistenceLayer(table_name=self.settings.idempotency_table, boto3_client=self._dynamodb_client)

        def call(attempt: Attempt) -> dict:
            return func(attempt)

        call.__name__ = f"whisperless_{prefix}_job"
        wrapped = idempotent_function(call, data_keyword_argument="attempt", persistence_store=store, config=config)
        return config, wrapped

    # -- entry ---------------------------------------------------------------------------
    def handle(
        self,
        job: ObjectJob | UrlJob | RequestedJob | VoiceTask | ChunkJob | MergeJob | Skip,
        context: Any = None,
        receive_count: int | None = None,
    ) -> dict:
        """Run one job. ``context``: the Lambda context, or None for the plain worker.
        ``receive_count``: how often the queue has delivered this message (None: not from a queue)."""
        if isinstance(job, Skip):
            log.info("skipped %s: %s", job.key or "event", job.reason)
            return {"status": "skipped", "reason": job.reason, "key": job.key}
        bucket = job.job.bucket if isinstance(job, ChunkJob | MergeJob) else job.bucket
        if self.settings.bucket and bucket != self.settings.bucket:
            # We may read and write only the deployment's bucket: anything else could never
            # succeed, and retrying it would only walk the message to the dead-letter queue.
            reason = f"bucket {bucket!r} is not this deployment's bucket"
            key = job.job.key if isinstance(job, ChunkJob | MergeJob) else job.key
            log.error("skipped %s: %s", key, reason)
            return {"status": "skipped", "reason": reason, "key": key}
        if isinstance(job, VoiceTask):
            if self.voices is None:
                log.error("skipped the voice %r: no VOICES_TABLE is configured", job.name)
                return {"status": "skipped", "reason": "no voices table", "key": job.key}
            return VoiceRunner(s3=self.s3, store=self.voices, results=self.results, engine=lambda: self.engine).handle(
                job
            )
        final = receive_count is not None and receive_count >= self.settings.max_receive_count
        seconds = self.settings.worker_job_seconds or DEFAULT_JOB_SECONDS
        return self._run(Attempt(job, final), context or LambdaContext("worker", seconds))

    def _run(self, attempt: Attempt, context: Any) -> dict:
        if isinstance(attempt.job, ChunkJob):
            config, runner = self._chunk_runner
        elif isinstance(attempt.job, MergeJob):
            config, runner = self._merge_runner
        elif isinstance(attempt.job, UrlJob):
            config, runner = self._url_runner
        elif isinstance(attempt.job, RequestedJob):
            config, runner = self._request_runner
        else:
            config, runner = self._object_runner
        config.register_lambda_context(context)
        return runner(attempt=attempt)

    # -- S3 object -----------------------------------------------------------------------
    def _process_object(self, attempt: Attempt) -> dict:
        job = attempt.job
        assert isinstance(job, ObjectJob)
        bucket = job.bucket
        key = job.key
        head = self._head(bucket, key)
        if head is None:
            log.warning("object %s/%s is gone; nothing to transcribe", bucket, key)
            return {"status": "skipped", "reason": "object no longer exists", "key": key}
        metadata = read_metadata(head.get("Metadata", {}))
        job_id = self._job_id(job, metadata)
        previous = self.jobs.start(job_id, bucket=bucket, key=key, params=_public_params(metadata))
        owner = previous.get("clientId") or bucket_owner(bucket)
        return self._object_job(attempt, job_id, bucket, key, head, metadata, previous, owner)

    def _object_job(self, attempt, job_id, bucket, key, head, metadata, previous, owner) -> dict:
        """An object in the bucket transcribed (an upload, or a Transcription Requested event), from
        its job record's start to the one ending. ``head``: the object's, or None when it is gone."""
        source = {"bucket": bucket, "key": key}
        callback_url = metadata.get(CALLBACK)
        try:
            check_output_keys(key)  # no room for its outputs: refused before any work
            if head is None:
                missing = AudioError(f"no object {key!r} in the bucket", code="file_not_found", field="key")
                return self._conclude(job_id, bucket, key, failed_document(job_id, missing, source), callback_url)
            audio = audio_identity(head)
            written = self.results.written(bucket, key, job_id=job_id, audio=audio)
            if written is not None:
                # Redelivered after its result was written (a crash or a timeout before the job's
                # end): the result is re-read, not recomputed, and a callback already made is not
                # made again.
                log.info("job %s: its result is already written; finishing the job", job_id)
                document, stored = written
                out = self._conclude(job_id, bucket, key, document, callback_url, stored=stored, previous=previous)
            else:
                outcome = self._result_for_object(job_id, bucket, key, head, metadata, source, owner)
                if isinstance(outcome, FannedOut):  # the merge names the speakers: the clips wait for it
                    return {"status": "fanned_out", "jobId": job_id, "chunks": outcome.total}
                out = self._conclude(job_id, bucket, key, outcome, callback_url, _formats(metadata), audio=audio)
            # After the ending, so that a redelivery before it still finds the request's clips.
            self._forget_references(bucket, job_id, _reference_count(metadata))
            return out
        except Exception as exc:
            refusal = storage_refusal(exc)
            if refusal is not None:  # S3 will refuse it however often it is retried: end the job now
                return self._conclude(job_id, bucket, key, failed_document(job_id, refusal, source), callback_url)
            self._attempt_failed(job_id, bucket, key, exc, callback_url, source, attempt.final)
            raise  # the message comes back, or after its last delivery moves to the DLQ

    def _job_id(self, job: ObjectJob, metadata: dict[str, str]) -> str:
        """The job an upload belongs to. The API names it in the object's metadata (``jobid``), but
        metadata is whatever the uploader sent: the name is honoured only for the key the job was
        created for (its record says), so an upload cannot take over someone else's job."""
        claimed = metadata.get(JOB_ID)
        if claimed:
            record = self.jobs.get(claimed) if JOB_ID_PATTERN.fullmatch(claimed) else None
            if record is not None and (record.get("bucket"), record.get("key")) == (job.bucket, job.key):
                return claimed
            log.warning(
                "object %s/%s names job %r, which was not created for this key: it is a job of its own",
                job.bucket,
                job.key,
                claimed[:128],
            )
        return job_id_for(job.bucket, job.key, job.etag, job.version_id)

    def _head(self, bucket: str, key: str) -> dict | None:
        try:
            return self.s3.head_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _result_for_object(self, job_id, bucket, key, head, metadata, source, owner: str) -> dict | FannedOut:
        """``owner``: whose enrolled voices ``knownSpeakers`` names (the API client, or the bucket)."""
        voices = None
        references = _reference_count(metadata)  # the request's own clips: enrolled below
        try:
            options = TranscriptionOptions.from_params(metadata, defaults=self.settings.defaults)
            if options.known_speakers and not references:
                if self.voices is None:
                    raise InvalidParameter("this deployment keeps no voices", field="knownSpeakers")
                voices = embeddings(self.voices.chosen(owner, options.known_speakers))
            # Before the download: a language or task the model cannot do fails the same way later.
            check_supported(abilities_from_name(self.engine.whisper_model), options.language, options.task)
            size = int(head.get("ContentLength", 0))
            if size > self.settings.max_audio_bytes:
                raise AudioError(
                    f"the audio is {size} bytes; the limit is {self.settings.max_audio_bytes}", code="audio_too_large"
                )
        except WhisperlessError as exc:
            return failed_document(job_id, exc, source)

        suffix = Path(key).suffix[:16]
        with tempfile.TemporaryDirectory(prefix="whisperless-") as tmp:
            local = Path(tmp) / f"audio{suffix}"
            self.s3.download_file(bucket, key, str(local))  # streams to disk; errors propagate (retry)
            self.jobs.record_progress(job_id, "transcribing", 0.02)
            try:
                if references:  # a clip that enrols no voice fails the job before any work
                    voices = self._reference_voices(bucket, job_id, options.known_speakers, Path(tmp))
                long_job = self._long_job(job_id, bucket, key, head, metadata, options, local)
            except Interrupted:
                raise
            except WhisperlessError as exc:
                return failed_document(job_id, exc, source)
            if long_job is not None:  # the merge names the speakers (the clips wait for it)
                self._fan_out(long_job)
                return FannedOut(long_job.total)
            try:
                result = self.engine.process(
                    local,
                    options,
                    job_id=job_id,
                    source=source,
                    cancel=self.stopping.is_set,
                    voices=voices,
                    progress=self._progress(job_id),
                )
            except Interrupted:
                raise  # not the job's failure: it is put back
            except WhisperlessError as exc:
                log.info("job %s failed: %s", job_id, exc.message)
                return failed_document(job_id, exc, source)
            except Exception as exc:  # noqa: BLE001 - the same input would fail again: report, do not retry
                log.exception("job %s: engine failure", job_id)
                return failed_document(job_id, exc, source)
        # Before the result (what clients wait for); an S3 failure here is retried like the result's.
        self.results.write_extras(bucket, key, result.unredacted, result.redacted_audio)
        return result.document

    def _reference_voices(self, bucket: str, job_id: str, names: tuple[str, ...], tmp: Path) -> dict[str, Any]:
        """The request's own voices (known_speaker_references[], stored by the API for this job)."""
        import numpy as np

        voices = {}
        for i, name in enumerate(names):
            local = tmp / f"reference-{i}"
            try:
                self.s3.download_file(bucket, reference_key(job_id, i), str(local))
            except self.s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
                raise AudioError(
                    f"the clip for {name!r} is gone", code="file_not_found", field=REFERENCES_FIELD
                ) from None
            voices[name] = np.asarray(self.engine.enrol(local, field=REFERENCES_FIELD).embedding)
        return voices

    def _forget_references(self, bucket: str, job_id: str, count: int) -> None:
        """Per-request clips are used once: deleted once the job has its result (best effort: the
        bucket's lifecycle rule drops any left under .voices/ after a day)."""
        for i in range(count):
            try:
                self.s3.delete_object(Bucket=bucket, Key=reference_key(job_id, i))
            except Exception:  # noqa: BLE001
                log.exception("job %s: could not delete its reference clip %d", job_id, i)

    def _progress(self, job_id: str, every: float = 5.0) -> Callable[[str, float], None]:
        """The engine's progress onto the job record: on a new stage, else at most every ``every``
        seconds (best effort: a lost update is only a stale percentage)."""
        last_stage, last_at = [""], [0.0]

        def record(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if stage == last_stage[0] and now - last_at[0] < every:
                return
            last_stage[0], last_at[0] = stage, now
            try:
                self.jobs.record_progress(job_id, stage, 0.02 + 0.95 * fraction)
            except Exception:  # noqa: BLE001
                log.warning("job %s: could not record its progress", job_id)

        return record

    # -- long recordings: chunk tasks and one merge ---------------------------------------------
    def _long_job(self, job_id, bucket, key, head, metadata, options, local: Path) -> LongJob | None:
        """The job as chunk tasks, when its audio is longer than ``WHISPERLESS_CHUNK_SECONDS`` (and
        there is a queue to send them to, and the diarization model splits); None: one pass."""
        from ..engine.audio import SAMPLE_RATE, probe_duration
        from ..engine.longform import plan

        chunk_seconds = self.settings.chunk_seconds
        if not (chunk_seconds and self._sqs and self.settings.queue_url):
            return None
        duration = probe_duration(local)
        if duration is None or duration <= chunk_seconds or not self.engine.can_split(options):
            return None  # one pass (which refuses audio over the limit as it decodes)
        limit = self.engine.settings.max_audio_seconds
        if duration > limit:  # chunks decode only their ranges: the limit is checked here
            raise AudioError(f"the audio is longer than the limit of {limit:.0f} s", code="audio_too_long")
        num_samples = round(duration * SAMPLE_RATE)
        chunks = plan(num_samples, chunk_seconds)
        if len(chunks) < 2:
            return None
        return LongJob(
            job_id=job_id,
            bucket=bucket,
            key=key,
            etag=str(head.get("ETag", "")).strip('"'),
            version_id=head.get("VersionId"),
            metadata=dict(metadata),
            num_samples=num_samples,
            chunk_seconds=chunk_seconds,
            total=len(chunks),
        )

    def _fan_out(self, job: LongJob) -> None:
        """Record the split and queue every chunk task. A redelivered planner queues them again:
        each chunk is done once (its own idempotency, and its part in S3)."""
        assert self._sqs is not None
        self.jobs.fan_out(job.job_id, job.total, job.chunk_seconds)
        entries = [{"Id": str(i), "MessageBody": json.dumps(ChunkJob(job, i).message())} for i in range(job.total)]
        for i in range(0, len(entries), 10):
            reply = self._sqs.send_message_batch(QueueUrl=self.settings.queue_url, Entries=entries[i : i + 10])
            if reply.get("Failed"):
                raise RuntimeError(f"the queue refused chunk tasks: {reply['Failed']}")
        log.info("job %s: %d chunk tasks queued", job.job_id, job.total)

    def _process_chunk(self, attempt: Attempt) -> dict:
        """One chunk: its part written once under the hidden prefix, then counted; the task whose
        count completes the job queues the merge."""
        task = attempt.job
        assert isinstance(task, ChunkJob)
        job = task.job
        job_id, bucket, key = job.job_id, job.bucket, job.key
        callback_url = job.metadata.get(CALLBACK)
        source = {"bucket": bucket, "key": key}
        record = self.jobs.get(job_id) or {}
        # A job that ended for good needs no more chunks. (One that gave up after retries did not:
        # its failed document is replaced if a redrive of the failed chunk completes it.)
        ended = record.get("status") == "completed" or (
            record.get("status") == "failed" and (record.get("error") or {}).get("code") != GaveUp.code
        )
        if ended:
            return {"status": "skipped", "reason": f"job {job_id} already ended", "key": key}
        try:
            if not self.results.has_part(bucket, job_id, task.index):
                failed = self._run_chunk(task, source)
                if failed is not None:  # the input's fault: the job ends now, naming the chunk
                    out = self._conclude(job_id, bucket, key, failed, callback_url)
                    self._clean_up(job)
                    return out
            counted, done = self.jobs.chunk_done(job_id, task.index, job.total)
            assert self._sqs is not None
            if done >= job.total and (counted or not (self.jobs.get(job_id) or {}).get("mergeQueuedAt")):
                self._sqs.send_message(
                    QueueUrl=self.settings.queue_url, MessageBody=json.dumps(MergeJob(job).message())
                )
                self.jobs.record_merge_queued(job_id)
                log.info("job %s: all %d chunks done; merge queued", job_id, job.total)
            return {"status": "chunk_done", "jobId": job_id, "chunk": task.index, "done": done, "total": job.total}
        except Exception as exc:
            if isinstance(exc, Interrupted):
                self._record_retry(job_id, exc, chunk=task.index)
                raise
            self._attempt_failed(job_id, bucket, key, ChunkFailed(task, exc), callback_url, source, attempt.final)
            raise

    def _run_chunk(self, task: ChunkJob, source: dict) -> dict | None:
        """Transcribe the chunk and write its part; a failed document when the input is at fault."""
        from ..engine.longform import plan

        job = task.job
        try:
            options = TranscriptionOptions.from_params(job.metadata, defaults=self.settings.defaults)
        except WhisperlessError as exc:
            return failed_document(job.job_id, ChunkFailed(task, exc), source)
        chunk = plan(job.num_samples, job.chunk_seconds)[task.index]
        with tempfile.TemporaryDirectory(prefix="whisperless-") as tmp:
            local = Path(tmp) / f"audio{Path(job.key).suffix[:16]}"
            self._download_pinned(job, local)
            try:
                output = self.engine.transcribe_chunk(
                    local, options, chunk, job.num_samples, cancel=self.stopping.is_set
                )
            except Interrupted:
                raise
            except WhisperlessError as exc:
                return failed_document(job.job_id, ChunkFailed(task, exc), source)
        self.results.write_part(job.bucket, job.job_id, task.index, output.save())
        return None

    def _download_pinned(self, job: LongJob, local: Path) -> None:
        """The job's audio as it was when it was split (its version, else its ETag must match)."""
        extra: dict[str, str] = {"VersionId": job.version_id} if job.version_id else {}
        if not job.version_id:
            head = self.s3.head_object(Bucket=job.bucket, Key=job.key)
            if str(head.get("ETag", "")).strip('"') != job.etag:
                raise AudioError("the audio was replaced while its job ran", code="audio_changed")
        self.s3.download_file(job.bucket, job.key, str(local), ExtraArgs=extra or None)

    def _process_merge(self, attempt: Attempt) -> dict:
        """Every chunk is done: join their parts into the one result, and end the job (once)."""
        from ..engine.longform import ChunkOutput

        task = attempt.job
        assert isinstance(task, MergeJob)
        job = task.job
        job_id, bucket, key = job.job_id, job.bucket, job.key
        callback_url = job.metadata.get(CALLBACK)
        source = {"bucket": bucket, "key": key}
        audio = {"etag": job.etag, "version": job.version_id}
        try:
            written = self.results.written(bucket, key, job_id=job_id, audio=audio)
            if written is not None:  # redelivered after its result was written: finish, do not redo
                document, stored = written
                out = self._conclude(
                    job_id, bucket, key, document, callback_url, stored=stored, previous=self.jobs.get(job_id)
                )
                self._clean_up(job)
                return out
            self.jobs.record_progress(job_id, "merging", 0.92)
            document = self._merged(
                job, source, [ChunkOutput.load(self.results.read_part(bucket, job_id, i)) for i in range(job.total)]
            )
            out = self._conclude(job_id, bucket, key, document, callback_url, _formats(job.metadata), audio=audio)
        except Exception as exc:
            refusal = storage_refusal(exc)
            if refusal is not None:
                return self._conclude(job_id, bucket, key, failed_document(job_id, refusal, source), callback_url)
            self._attempt_failed(job_id, bucket, key, exc, callback_url, source, attempt.final)
            raise
        self._clean_up(job)
        return out

    def _merged(self, job: LongJob, source: dict, parts: list) -> dict:
        with tempfile.TemporaryDirectory(prefix="whisperless-") as tmp:
            try:
                options = TranscriptionOptions.from_params(job.metadata, defaults=self.settings.defaults)
                voices = self._merge_voices(job, options, Path(tmp))
            except WhisperlessError as exc:  # a voice forgotten, or its clip gone, since the split
                return failed_document(job.job_id, exc, source)
            local = None
            if options.redact_audio:  # the one output that needs the whole recording again
                local = Path(tmp) / f"audio{Path(job.key).suffix[:16]}"
                self._download_pinned(job, local)
            try:
                result = self.engine.merge_chunks(
                    parts, options, job_id=job.job_id, source=source, audio=local, voices=voices
                )
            except Interrupted:
                raise
            except Exception as exc:  # noqa: BLE001 - the same parts would fail again: report, do not retry
                log.exception("job %s: merge failure", job.job_id)
                return failed_document(job.job_id, exc, source)
        self.results.write_extras(job.bucket, job.key, result.unredacted, result.redacted_audio)
        return result.document

    def _merge_voices(self, job: LongJob, options: TranscriptionOptions, tmp: Path) -> dict[str, Any] | None:
        """The known voices a split job's merge names speakers with: the request's clips (deleted
        once the job has ended, :meth:`_clean_up`), or the owner's enrolled voices as they are now."""
        if _reference_count(job.metadata):
            return self._reference_voices(job.bucket, job.job_id, options.known_speakers, tmp)
        if not options.known_speakers:
            return None
        if self.voices is None:
            raise InvalidParameter("this deployment keeps no voices", field="knownSpeakers")
        owner = (self.jobs.get(job.job_id) or {}).get("clientId") or bucket_owner(job.bucket)
        return embeddings(self.voices.chosen(owner, options.known_speakers))

    def _clean_up(self, job: LongJob) -> None:
        """After a split job's ending (so that a redelivered merge still finds them): its parts and
        the request's reference clips."""
        self._delete_parts(job)
        self._forget_references(job.bucket, job.job_id, _reference_count(job.metadata))

    def _delete_parts(self, job: LongJob) -> None:
        """Best effort: what is left expires by the bucket's lifecycle rule."""
        try:
            self.results.delete_parts(job.bucket, job.job_id, job.total)
        except Exception:  # noqa: BLE001
            log.exception("job %s: could not delete its chunk parts; the lifecycle rule will", job.job_id)

    # -- Transcription Requested (an EventBridge event) ------------------------------------
    def _process_request(self, attempt: Attempt) -> dict:
        """An object already in the bucket, transcribed with the event's parameters (not the
        object's metadata): one job per request, so the same audio may be asked for again with
        other parameters; its result replaces ``<key>.json``."""
        job = attempt.job
        assert isinstance(job, RequestedJob)
        bucket, key, job_id = job.bucket, job.key, job.job_id
        params = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in job.params.items()}
        metadata = upload_metadata(job_id, params)
        head = self._head(bucket, key)
        previous = self.jobs.start(job_id, bucket=bucket, key=key, params=_public_params(metadata))
        # An event on the bus names no API client: the bucket's voices.
        return self._object_job(attempt, job_id, bucket, key, head, metadata, previous, bucket_owner(bucket))

    # -- URL job (from the API) ------------------------------------------------------------
    def _process_url(self, attempt: Attempt) -> dict:
        from . import netguard

        job = attempt.job
        assert isinstance(job, UrlJob)
        bucket, key, job_id = job.bucket, job.key, job.job_id
        metadata = upload_metadata(job_id, job.params)
        callback_url = metadata.get(CALLBACK)
        source = {"url": job.url}
        try:
            written = self.results.written(bucket, key, job_id=job_id, audio=None)
            if written is not None:  # the url failed for good on an earlier attempt
                document, stored = written
                previous = self.jobs.get(job_id)
                return self._conclude(job_id, bucket, key, document, callback_url, stored=stored, previous=previous)
            head = self._head(bucket, key)
            if head is None or read_metadata(head.get("Metadata", {})).get(JOB_ID) != job_id:
                with tempfile.TemporaryDirectory(prefix="whisperless-") as tmp:
                    local = Path(tmp) / "download"
                    try:
                        self._download(job, local)
                    except (
                        netguard.UnsafeURL,
                        netguard.DownloadFailed,
                        netguard.ResponseTooLarge,
                        UrlUnreachable,
                    ) as exc:
                        return self._conclude(job_id, bucket, key, failed_document(job_id, exc, source), callback_url)
                    self.s3.upload_file(str(local), bucket, key, ExtraArgs={"Metadata": metadata})
                head = self.s3.head_object(Bucket=bucket, Key=key)
            # else: fetched on an earlier attempt, which did not get to the end
        except Exception as exc:
            self._attempt_failed(job_id, bucket, key, exc, callback_url, source, attempt.final)
            raise
        # The upload also raises an S3 event for this object; both paths share this
        # idempotency key, so whichever comes second is a no-op. Same invocation: its deadline
        # and whether this is the message's last delivery carry over.
        uploaded = ObjectJob(bucket=bucket, key=key, etag=head["ETag"].strip('"'), version_id=head.get("VersionId"))
        return self._run(Attempt(uploaded, attempt.final), self._url_runner[0].lambda_context)

    def _download(self, job: UrlJob, local: Path) -> None:
        """GET the job's url into ``local``. A passing failure (no connection, a timeout, 5xx, 408,
        429) is tried again after a pause, a few times within about a minute, each failure on the
        job record (``GET`` shows it); then the job fails for good (:class:`UrlUnreachable`). The
        count lives on the record, so a redelivered job does not start over."""
        from . import netguard

        attempts = len(self.download_backoff) + 1
        done = int((self.jobs.get(job.job_id) or {}).get("downloadAttempts", 0))
        last = "no attempt left"
        for attempt in range(done + 1, attempts + 1):
            try:
                netguard.download(
                    job.url,
                    local,
                    max_bytes=self.settings.max_audio_bytes,
                    field="url",
                    allow_loopback=self.settings.allow_local_callbacks,
                )
                return
            except (netguard.FetchError, netguard.DownloadFailed) as exc:
                if exc.permanent:
                    raise
                last = exc.message
                self._record_retry(job.job_id, exc, download_attempts=attempt)
                if attempt < attempts and self.stopping.wait(self.download_backoff[attempt - 1]):
                    raise Interrupted("the worker is stopping; the job is put back for another attempt") from exc
        raise UrlUnreachable(f"the url failed {attempts} attempts; the last: {last}", field="url")

    # -- the one ending ----------------------------------------------------------------------
    def _conclude(
        self,
        job_id: str,
        bucket: str,
        key: str,
        document: dict,
        callback_url: str | None,
        formats: tuple[str, ...] = (),
        *,
        audio: dict | None = None,
        final: bool = True,
        stored: dict | None = None,
        previous: dict | None = None,
    ) -> dict:
        """Every job ends here, in steps that each happen once across redeliveries:

            renderings asked for, then the result written (one PUT each, all or nothing; the
            result last, so whoever sees it finds the renderings; its object metadata names the
            job and the audio it is for) -> job record finished (with the result's ETag) -> the
            job's event published (recorded on the job record) -> callback made (recorded with
            the ETag of the result it carried)

        ``stored``/``previous``: the result an earlier attempt already wrote, and the job record as
        that attempt left it; then nothing is written again, and a callback already made for that
        result is not made again. ``final=False``: a document a redrive should replace
        (``retries_exhausted``). Only the writes may raise: after them, the result is what clients
        read first, so a lost record, event or callback outcome must not make the job run again.
        A write S3 refuses for good (a key too long for its result) is not retried either: the
        job record and the callback say why, since there is nowhere next to the audio to say it."""
        if stored is None:
            try:
                if document.get("status") == "completed" and formats:
                    self.results.write_sidecars(bucket, key, document, formats)
                stored = self.results.write(bucket, key, document, job_id=job_id, audio=audio, final=final)
            except Exception as exc:
                refusal = storage_refusal(exc)
                if refusal is None:
                    raise
                log.error("job %s: the result cannot be stored: %s", job_id, refusal.message)
                if document.get("status") != "failed":
                    document = failed_document(job_id, refusal, document.get("source"))
        self._finish_record(job_id, document, stored)
        event = self._publish_event(job_id, bucket, key, document)
        made = (previous or {}).get("callback")
        if stored is not None and made and made.get("resultEtag") == stored["etag"]:
            log.info("job %s: its callback was already made; not made again", job_id)
            delivery: dict | None = made
        else:
            delivery = self._call_back(callback_url, job_id, document, stored)
        log.info("job %s %s: %s", job_id, document["status"], result_key(key))
        return {
            "status": document["status"],
            "jobId": job_id,
            "resultKey": result_key(key),
            "event": event,
            "callback": delivery,
        }

    def _publish_event(self, job_id: str, bucket: str, key: str, document: dict) -> dict | None:
        """The job's one EventBridge event, once its result is written (cloud.eventbus).

        Duplicate deliveries never get here (Powertools idempotency answers them with the first
        run's outcome). What does is a rerun of a job whose first run crashed after publishing
        and before its idempotency record completed: the job record says the event went out, so
        it is not published again. The remaining window, a crash between PutEvents and recording
        it, gives a second event (at least once, as EventBridge itself delivers): consumers that
        must not act twice dedupe on detail.jobId. A job that ends differently on a later run (a
        failure redriven from the dead-letter queue that now completes) publishes its new ending.
        Best effort like the callback: an EventBridge failure is logged and recorded, never
        retried by redoing the job."""
        if self.bus is None:
            return None
        status = document["status"]
        try:
            record = self.jobs.get(job_id) or {}
        except Exception:  # noqa: BLE001 - without the record we publish (at least once) without clientId
            log.exception("job %s: could not read the job record before publishing its event", job_id)
            record = {}
        published = record.get("event") or {}
        if published.get("status") == status and published.get("id"):
            log.info("job %s: its %s event was already published (%s)", job_id, status, published["id"])
            return published
        detail = job_event(job_id, bucket, key, document, client_id=record.get("clientId"))
        try:
            outcome = {"status": status, "id": self.bus.publish(detail)}
        except Exception as exc:  # noqa: BLE001 - the result is written; an event must not redo the job
            log.exception("job %s: could not publish its event", job_id)
            outcome = {"status": status, "error": error_summary(exc)}
        try:
            self.jobs.record_event(job_id, outcome)
        except Exception:  # noqa: BLE001
            log.exception("job %s: event published, but not recorded on the job record", job_id)
        return outcome

    def _attempt_failed(self, job_id, bucket, key, exc, callback_url, source, final: bool) -> None:
        """Record why this attempt failed; on the message's last delivery, tell the user (failed
        document, callback) before the message moves to the dead-letter queue. A redrive from
        there redoes the job and replaces the document. Best effort: what failed may be S3 itself."""
        self._record_retry(job_id, exc)
        if not final or isinstance(exc, Interrupted):  # a stopping worker is no reason to give up
            return
        document = failed_document(job_id, GaveUp(exc, self.settings.max_receive_count), source)
        try:
            self._conclude(job_id, bucket, key, document, callback_url, final=False)
        except Exception:  # noqa: BLE001
            log.exception("job %s: could not write the failed document; the DLQ holds the message", job_id)

    def _finish_record(self, job_id: str, document: dict, stored: dict | None) -> None:
        try:
            self.jobs.finish(
                job_id,
                status=document["status"],
                timings=document.get("timings"),
                error=document.get("error"),
                duration=document.get("duration"),
                result=stored,
            )
        except Exception:  # noqa: BLE001
            log.exception("job %s: result written, but the job record could not be updated", job_id)
        if self.metrics is not None:
            record_job_metrics(self.metrics, document)

    def _record_retry(
        self, job_id: str, exc: BaseException, *, download_attempts: int | None = None, chunk: int | None = None
    ) -> None:
        """Why this attempt failed, on the job record (best effort: DynamoDB may be what failed);
        ``chunk``: the split job's chunk whose attempt it was."""
        reason: dict[str, Any] = {**error_summary(exc)}
        if isinstance(exc, ChunkFailed):
            chunk = exc.index
        if chunk is not None:
            reason["chunk"] = chunk
        log.error("job %s: attempt failed (%s: %s); it will be retried", job_id, reason["code"], reason["message"])
        try:
            self.jobs.record_retry(job_id, reason, download_attempts=download_attempts)
        except Exception as record_exc:  # noqa: BLE001
            log.error(
                "job %s: could not record the failure on the job record: %s",
                job_id,
                error_summary(record_exc)["message"],
            )

    def _call_back(self, url: str | None, job_id: str, document: dict, stored: dict | None) -> dict | None:
        if not url:
            return None
        outcome = self.callbacks.send(url, job_id, document, self.settings)
        if stored is not None:
            outcome["resultEtag"] = stored["etag"]  # which result this callback carried
        try:
            self.jobs.record_callback(job_id, outcome)
        except Exception:  # noqa: BLE001 - the result is written; a lost record must not redo the job
            log.exception("job %s: could not record the callback outcome", job_id)
        return outcome


def _reference_count(metadata: dict[str, str]) -> int:
    """How many known_speaker_references[] clips the API stored for the job."""
    count = metadata.get(VOICE_REFERENCES, "")
    return min(int(count), MAX_KNOWN_SPEAKERS) if count.isdigit() else 0


def _formats(metadata: dict[str, str]) -> tuple[str, ...]:
    """The renderings the upload asked for; a bad value already failed the job (options)."""
    try:
        return parse_formats(metadata["formats"]) if metadata.get("formats") else ()
    except InvalidParameter:
        return ()


def _public_params(metadata: dict[str, str]) -> dict[str, str]:
    """The job's request parameters as recorded (our own bookkeeping names left out)."""
    return {k: v for k, v in metadata.items() if k not in BOOKKEEPING}
