"""The demo: a serverless shopping cart on emulated AWS, traced by hoptrace (``hoptrace demo``).

Modelled on AWS's serverless shopping cart sample. ``app`` describes the functions and the
resources they use, ``functions`` holds one Lambda handler module per function, ``runner``
plays Lambda's part against a moto server (API Gateway, SQS and DynamoDB-stream event sources,
one worker process per function), ``services`` is the outside world the functions call over
HTTP, ``traffic`` sends shoppers through it and ``stack`` starts and stops everything.
"""
