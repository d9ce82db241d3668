"""The cloud side: events in, jobs run, results stored, callers told. Knows AWS; knows the
engine only through ``JobRunner.engine``.

    events      S3 notifications, EventBridge events, API job messages -> typed jobs
    runner      JobRunner: fetch -> engine -> conclude (result, job record, callback)
    stores      JobStore (DynamoDB job records), ResultStore (documents next to the audio)
    netguard    fetching user URLs without reaching private addresses (SSRF)
    webhooks    Standard Webhooks signing and delivery; callbacks: the job's callback
    api, forms  the HTTP API's logic; apikeys: hashed keys
    worker      the plain queue worker (GPU hosts); context: a Lambda context stand-in
"""
