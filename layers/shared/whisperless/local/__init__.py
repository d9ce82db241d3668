"""The local stack: the product on one machine, no AWS account, no Docker.

cloudformation  template.yaml -> SAM translation -> a stack in moto's CloudFormation
lambda_host     handlers loaded and invoked as Lambda would (events, context, routes)
stack           LocalStack: moto server + stack + API front + queue worker
http            the API's HTTP front and the web page (web/)
serve, demo     the ``whisperless serve`` and ``whisperless demo`` commands
"""
