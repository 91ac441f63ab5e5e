"""The shop's Lambda functions, one handler module per function (``module.handler``).

Each module reads its resources from environment variables, as a function deployed by SAM
would, and calls AWS through plain boto3 clients (``AWS_ENDPOINT_URL`` points them at the
emulator). All but ``partner_import`` are traced by hoptrace's ``@hoptrace.lambda_handler``.
"""
