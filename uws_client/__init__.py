"""A client for IVOA UWS 1.1 services, and the ``uws`` command (see :mod:`uws_client.cli`).

from uws_client import Client
job = Client("http://127.0.0.1:8080", token).submit("echo_job", {"text": "hi"}, run=True)
job.wait().raise_for_phase().download("out/")
"""

from uws_client.client import Client, Job, ParameterError, Progress, UWSClientError
from uws_client.documents import JobInfo, JobRef, ResultRef

__all__ = [
    "Client",
    "Job",
    "JobInfo",
    "JobRef",
    "ParameterError",
    "Progress",
    "ResultRef",
    "UWSClientError",
]
