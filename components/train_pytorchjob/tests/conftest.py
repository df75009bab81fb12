"""The suite's moto S3 server (tests/conftest.py), shared rather than copied: stage tests move files through S3."""

from tests.conftest import s3_env, s3_server

__all__ = ["s3_env", "s3_server"]
