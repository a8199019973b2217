"""TFDS's download, tried fast when there is no network.

Users with internet get TFDS's ``download_and_prepare`` as it is, retries
included. With no network those retries (10 per file, backing off to 100 s)
only delay the answer by minutes, so a quick probe of the dataset's download
hosts comes first; when none answers, the download is tried once without
retries and fails in a moment.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
import urllib.request
from typing import Iterator

import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import downloader as tfds_downloader

PROBE_SECONDS = 3.0
# TFDS tries its own storage bucket before a dataset's URLs.
GCS_HOST = ("storage.googleapis.com", 443)


def download_hosts(builder: tfds.core.DatasetBuilder) -> list[tuple[str, int]]:
  """The (host, port) pairs ``builder`` downloads from, as far as TFDS knows.

  Empty when the builder registers no URLs (then nothing is probed).
  """
  try:
    urls = list(builder.url_infos or ())
  except Exception:  # pylint: disable=broad-except
    # url_infos reads TFDS's checksum files: any failure just means unknown.
    return []
  hosts = [GCS_HOST] if urls else []
  for url in urls:
    parts = urllib.parse.urlsplit(url)
    if parts.hostname:
      hosts.append((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
  return list(dict.fromkeys(hosts))


def unreachable(hosts: list[tuple[str, int]], timeout: float = PROBE_SECONDS) -> str | None:
  """Why none of ``hosts`` answers, or None when one does.

  Each host is resolved and connected to in its own daemon thread, so a DNS
  lookup that hangs costs ``timeout`` seconds, not the resolver's own.

  Args:
    hosts: (host, port) pairs; empty means unknown, taken as reachable.
    timeout: seconds for all the probes together.

  Returns:
    None when a host answers, no host is known, or a proxy is configured
    (requests goes through it; the proxy is not probed); else a short
    reason per host.
  """
  if not hosts or urllib.request.getproxies():
    return None
  results: dict[tuple[str, int], str | None] = {}

  def probe(host: str, port: int) -> None:
    try:
      socket.create_connection((host, port), timeout=timeout).close()
      results[host, port] = None
    except OSError as e:
      results[host, port] = e.strerror or str(e) or type(e).__name__

  threads = [threading.Thread(target=probe, args=hp, daemon=True) for hp in hosts]
  for t in threads:
    t.start()
  deadline = time.monotonic() + timeout
  for t in threads:
    t.join(max(0.0, deadline - time.monotonic()))
  if any(results.get(hp, "") is None for hp in hosts):
    return None
  return "; ".join(f"{host}: {results.get((host, port)) or f'no answer in {timeout:g} s'}"
                   for host, port in hosts)


@contextlib.contextmanager
def _no_retries() -> Iterator[None]:
  """TFDS's HTTP downloads without retries, for this block only."""
  if not hasattr(tfds_downloader, "MAX_RETRIES"):  # another TFDS: keep its own
    yield
    return
  saved = tfds_downloader.MAX_RETRIES
  tfds_downloader.MAX_RETRIES = 0
  try:
    yield
  finally:
    tfds_downloader.MAX_RETRIES = saved


def _first_line(error: BaseException, limit: int = 300) -> str:
  text = (str(error).strip().splitlines() or [""])[0]
  return text if len(text) <= limit else text[:limit] + "..."


def try_download(builder: tfds.core.DatasetBuilder) -> str | None:
  """Runs TFDS's ``download_and_prepare``, fast when offline.

  Returns:
    None when the dataset was prepared, else what happened, for the list of
    places searched.
  """
  offline = unreachable(download_hosts(builder))
  try:
    if offline is None:
      builder.download_and_prepare()
    else:
      with _no_retries():
        builder.download_and_prepare()
    return None
  except Exception as e:  # pylint: disable=broad-except
    # Any download failure (DNS, HTTP, checksum) ends in the same advice.
    if offline is not None:
      return f"TFDS download: failed at once, no network ({offline})"
    return f"TFDS download: failed with {type(e).__name__}: {_first_line(e)}"
