"""A ``dagster-webserver`` (or ``dagster dev``) under test: a free loopback port and a wait until its
GraphQL endpoint answers with the asset graph."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

HOST = "127.0.0.1"
START_TIMEOUT_S = 120  # imports and the code server's start are slow on a loaded 2-core machine

QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking } }
    }
  }
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        sensors { name sensorType defaultStatus sensorState { status } }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def post_graphql(url: str, query: str, timeout: float = 30) -> dict:
    request = urllib.request.Request(url, data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until_up(process: subprocess.Popen, url: str, log_path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {process.returncode}:\n"
                        f"{log_path.read_text()[-6000:]}")
        try:
            answer = post_graphql(url, QUERY)
            if answer.get("data", {}).get("assetNodes"):
                return answer
            last_error = answer
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as exc:
            last_error = exc
        time.sleep(1)
    pytest.fail(f"dagster-webserver did not answer in {START_TIMEOUT_S} s ({last_error!r}):\n"
                f"{log_path.read_text()[-6000:]}")
