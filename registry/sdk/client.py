"""Python SDK over the HTTP API (httpx). The CLI and deploy jobs use it.

    client = RegistryClient.from_env()            # MODELSEAL_URL, MODELSEAL_TOKEN
    version = client.push(Path("out/"), "vision/resnet@1.0.0")
    client.pull("vision/resnet@1.0.0", Path("/srv/model"))

A pull streams every file into a temporary directory beside the target while hashing it, and moves
the directory into place only when every file matched its digest and the file set matches the root
digest; on any failure the target is left exactly as it was.

This module holds :class:`RegistryClient`: the HTTP setup, the requests (retries, problem answers
as :mod:`registry.errors`, paging) and the JSON endpoints. Its larger methods delegate, keeping
their signatures and docstrings here: pushing to :mod:`registry.sdk.push`, the verified pull to
:mod:`registry.sdk.pull`, and the checks of what the registry signs (its key, a version's status,
release and pending evidence, the audit-log head) to :mod:`registry.sdk.trust`. Those modules
import this one only for type checking.
"""

from __future__ import annotations

import math
import os
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from attest.digests import FileDigest
from registry.errors import (
    ConnectionFailedError,
    InvalidRequestError,
    NotFoundError,
    RegistryError,
    ScanPendingError,
    error_from_problem,
)
from registry.names import Kind, Ref, parse_ref
from registry.sdk import logcheck as _logcheck
from registry.sdk import pull as _pull
from registry.sdk import push as _push
from registry.sdk import records
from registry.sdk import trust as _trust
from registry.sdk.pins import PinStore
from registry.sdk.pull import SCAN_WAIT_SECONDS
from registry.sdk.push import collect_files as collect_files  # re-exported: the CLI imports it here
from registry.sdk.redirects import RedirectMemory
from registry.sdk.resume import UploadJournal
from registry.sdk.transfer import RawTransport, Retry, redact_secrets

if TYPE_CHECKING:
    # Imported where they are used: `show` and `list` (start-up is most of their time) need none
    # of the hashing, signing and verifying machinery, nor pydantic (the CLI's read commands
    # read registry.sdk.records instead of the wire models).
    from attest.files import LocalFile
    from attest.note import NoteVerifier
    from attest.signing import Signer
    from attest.trust import Trust
    from attest.verifying import Verifier
    from registry.wire import (
        AliasMovePublic,
        AliasPublic,
        ArtifactPublic,
        AttestationPublic,
        IdentityPublic,
        PolicyPublic,
        RevocationPublic,
        TokenPublic,
        VersionPublic,
        VersionSummary,
    )

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * MiB
#: The registry-signed statement of a version's current state (registry.server.services.releases).
#: How old a signed status may be when a pull checks it (``MODELSEAL_STATUS_MAX_AGE``): a
#: replayed "released" status is refused once this long has passed since the registry signed it.
DEFAULT_STATUS_MAX_AGE = 300.0

Progress = Callable[[int], None]
#: The most pages one list may take (a million items at the registry's page size): a registry
#: that keeps answering new cursors cannot keep a client busy for ever.
MAX_PAGES = 1000


def public_token_id(token: str) -> str:
    """The part of an API token that may be shown: ``ms_<id>`` (never any of the secret)."""
    head, sep, rest = token.partition("_")
    if head + sep != "ms_":
        return "(not an ms_… token)"
    token_id = ""
    for char in rest[:16]:
        if char not in "0123456789abcdef":
            break
        token_id += char
    return f"ms_{token_id}"


def token_id_of(text: str) -> str:
    """The id to name a token by (``token revoke``), from its id, ``ms_<id>`` or the whole
    token pasted by mistake: the secret is dropped here, so it is never sent nor shown.

    Raises:
        InvalidRequestError: not a token id; the message shows at most ``ms_<id>``.
    """
    text = text.strip()
    if text.startswith("ms_"):
        text = public_token_id(text).removeprefix("ms_")
    if not text or len(text) > 64 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidRequestError(
            "not a token id: give the id `modelseal token list` shows (or ms_<id>); "
            "the value given is not repeated here in case it holds a secret"
        )
    return text


def clean_token(token: str | None, *, source: str = "MODELSEAL_TOKEN") -> str | None:
    """``token`` without surrounding whitespace (``$(cat token-file)`` keeps an editor's
    newline); None when empty.

    Raises:
        InvalidRequestError: whitespace or control characters inside it (two tokens in one
            file, a pasted line break); the message shows only the public id.
    """
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    if any(not ("!" <= char <= "~") for char in token):
        raise InvalidRequestError(
            f"the API token {public_token_id(token)}… in {source} holds whitespace or control "
            "characters inside it; it must be exactly one token (ms_<id>_<secret>) on one line"
        )
    return token


class RegistryClient:
    """A client of one registry, authenticated by one API token."""

    #: items asked for per page of a list endpoint (the registry's maximum is 1000)
    page_size = 1000
    #: called with (url, fingerprint, pin file) when a registry key is pinned on first contact
    on_pinned: Callable[[str, str, Path], None] | None = None
    #: called with a line a person should read: the log key pinned, a pull that is a rollback
    on_notice: Callable[[str], None] | None = None
    #: the registry key the last check trusted (``--registry-key`` or pinned): the log's key
    #: must be vouched for by it (set by :meth:`registry_verifier`)
    registry_anchor: Verifier | None = None
    #: whether that key was the caller's own (``--registry-key``), not one pinned on first use
    registry_key_given: bool = False

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        verify: bool | str = True,
        timeout: float = 300.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        workers: int = 4,
        transport: httpx.BaseTransport | None = None,
        storage_redirects: bool = True,
        status_max_age: float = DEFAULT_STATUS_MAX_AGE,
        log_max_age: float = _logcheck.DEFAULT_LOG_MAX_AGE,
        witnesses: Sequence[NoteVerifier] = (),
        witness_threshold: int | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(
                f"url {url!r} is not a registry URL: it needs http:// or https:// and a host, "
                "e.g. http://127.0.0.1:8700",
                url=url,
            )
        headers = {"User-Agent": "modelseal-client"}
        token = clean_token(token, source="the token given")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limits = httpx.Limits(max_connections=max(8, workers * 2))
        tls: bool | ssl.SSLContext
        if urlsplit(url).scheme == "http":
            # Plain http never uses it; httpx would otherwise load the whole CA bundle (~0.2 s
            # of every command's start-up). No CAs, hostname checks on: any TLS use fails closed.
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        elif isinstance(verify, str):
            tls = ssl.create_default_context(cafile=verify)
        else:
            tls = verify
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            verify=tls,
            timeout=httpx.Timeout(timeout, connect=30.0),
            transport=transport,
            limits=limits,
        )
        self._raw = RawTransport(url, headers, verify=verify, timeout=timeout,
                                 memory=RedirectMemory())  # fmt: skip
        #: The upload sessions this client has open (the next push of the same bytes resumes them).
        self.uploads = UploadJournal()
        self.chunk_size = chunk_size
        self.workers = workers
        #: Let a registry that presigns downloads send file bytes straight from its store
        #: (checked here exactly as streamed ones are; a store found unusable from this machine
        #: is skipped for a day, remembered beside the pins: registry.sdk.redirects).
        self.storage_redirects = storage_redirects
        if not (math.isfinite(status_max_age) and status_max_age > 0):
            raise InvalidRequestError(
                f"the status freshness window must be a positive number of seconds, not "
                f"{status_max_age!r}"
            )
        #: Seconds a registry-signed status may be old when a pull checks it.
        self.status_max_age = status_max_age
        try:  # the transparency log: checkpoint age, witnesses (default: all those named)
            k = _logcheck.check_requirements(log_max_age, witnesses, witness_threshold)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        self.log_max_age, self.witnesses, self.witness_threshold = log_max_age, list(witnesses), k

    @classmethod
    def from_env(cls, **kwargs: Any) -> RegistryClient:
        """Build from ``MODELSEAL_URL``, ``MODELSEAL_TOKEN`` and ``MODELSEAL_CA_BUNDLE``."""
        url = os.environ.get("MODELSEAL_URL", "http://127.0.0.1:8700")
        ca = os.environ.get("MODELSEAL_CA_BUNDLE")
        if ca:
            kwargs.setdefault("verify", ca)
        max_age = os.environ.get("MODELSEAL_STATUS_MAX_AGE")
        if max_age:
            try:
                kwargs.setdefault("status_max_age", float(max_age))
            except ValueError:
                raise InvalidRequestError(
                    f"MODELSEAL_STATUS_MAX_AGE must be a number of seconds, not {max_age!r}"
                ) from None
        try:
            _logcheck.settings_from_env(kwargs)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        return cls(url, clean_token(os.environ.get("MODELSEAL_TOKEN")), **kwargs)

    def close(self) -> None:
        self._http.close()
        self._raw.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------------

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = {"detail": f"HTTP {response.status_code}: {response.text[:200]}"}
        raise error_from_problem(response.status_code, body if isinstance(body, dict) else {})

    def _request(
        self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One request; GET and HEAD (and requests the caller marks ``idempotent``) are retried
        on 503 and on transport errors with bounded backoff (:class:`Retry`)."""
        retried = idempotent or method in ("GET", "HEAD")
        attempts = Retry.attempts if retried else 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt < attempts:
                    time.sleep(Retry.delay(attempt))
                    continue
                gave_up = f" {Retry.gave_up(attempt, started)}" if retried else ""
                raise ConnectionFailedError(
                    f"cannot reach the registry at {self._http.base_url}: "
                    f"{redact_secrets(str(exc))}{gave_up}"
                ) from exc
            if response.status_code == 503 and attempt < attempts:
                response.close()
                time.sleep(Retry.delay(attempt, response.headers.get("Retry-After")))
                continue
            if response.status_code == 503 and retried:
                try:
                    self._check(response)
                except RegistryError as exc:
                    exc.detail = f"{exc.detail} {Retry.gave_up(attempt, started)}"
                    exc.args = (exc.detail,)
                    raise
            return self._check(response)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _version_path(ref: Ref) -> str:
        return (
            f"/v1/namespaces/{ref.namespace}/artifacts/{ref.name}/versions/"
            f"{quote(ref.selector, safe=':')}"
        )

    # -- reading ----------------------------------------------------------------------------

    def _all(self, path: str, params: Mapping[str, str] | None = None) -> list[Any]:
        """Every item of a list endpoint, following its ``Link: rel="next"`` pages."""
        items: list[Any] = []
        query: dict[str, str] = {**(params or {}), "limit": str(self.page_size)}
        seen: set[str] = set()
        while True:
            response = self._request("GET", path, params=query)
            page = _decoded(response, path)
            if not isinstance(page, list):
                raise InvalidRequestError(f"{path} did not answer a list")
            items.extend(page)
            following = response.links.get("next", {}).get("url")
            if not following:
                return items
            cursor = parse_qs(urlsplit(following).query).get("cursor")
            if not cursor or not page or cursor[0] in seen or len(seen) >= MAX_PAGES:
                raise InvalidRequestError(
                    f"{path} answered a next page that does not move on (a cursor seen before, "
                    f"or more than {MAX_PAGES} pages)"
                )
            seen.add(cursor[0])
            query["cursor"] = cursor[0]

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/health").json()
        return result

    def show(self, ref: str, *, unsafe: bool = False) -> VersionPublic:
        from registry.wire import VersionPublic

        parsed = parse_ref(ref)
        headers = {"X-Modelseal-Unsafe-Skip-Verify": "1"} if unsafe else None
        response = self._request("GET", self._version_path(parsed), headers=headers)
        return VersionPublic.model_validate(response.json())

    def list_namespaces(self) -> list[str]:
        path = "/v1/namespaces"
        return [n.name for n in records.parse_list(records.Namespace, self._all(path),
                                                   f"GET {path}")]  # fmt: skip

    def list_artifacts(self, namespace: str) -> list[ArtifactPublic]:
        from registry.wire import ArtifactPublic

        data = self._all(f"/v1/namespaces/{namespace}/artifacts")
        return [ArtifactPublic.model_validate(a) for a in data]

    def list_versions(self, namespace: str, name: str) -> list[VersionSummary]:
        from registry.wire import VersionSummary

        data = self._all(f"/v1/namespaces/{namespace}/artifacts/{name}/versions")
        return [VersionSummary.model_validate(v) for v in data]

    # -- reading without pydantic -------------------------------------------------------------
    # The requests of show(), list_versions()… answered with registry.sdk.records' dataclasses,
    # checked by hand: what the CLI's read commands print (they are mostly start-up, and load
    # neither pydantic nor the wire models). A malformed answer is a ResponseVerificationError.

    def _records(
        self, cls: type[records.R], path: str, params: Mapping[str, str] | None = None
    ) -> list[records.R]:
        return records.parse_list(cls, self._all(path, params), f"GET {path}")

    def _record(
        self, cls: type[records.R], path: str, params: Mapping[str, str] | None = None
    ) -> records.R:
        return records.parse(cls, _decoded(self._request("GET", path, params=params), path),
                             f"GET {path}")  # fmt: skip

    def show_record(self, ref: str) -> records.Version:
        """:meth:`show` as a :class:`records.Version`."""
        return self._record(records.Version, self._version_path(parse_ref(ref)))

    def list_artifact_records(self, namespace: str) -> list[records.Artifact]:
        """:meth:`list_artifacts` as :class:`records.Artifact`."""
        return self._records(records.Artifact, f"/v1/namespaces/{namespace}/artifacts")

    def list_version_records(self, namespace: str, name: str) -> list[records.VersionSummary]:
        """:meth:`list_versions` as :class:`records.VersionSummary`."""
        path = f"/v1/namespaces/{namespace}/artifacts/{name}/versions"
        return self._records(records.VersionSummary, path)

    def list_attestation_records(
        self, ref: str, predicate_type: str | None = None
    ) -> list[records.Attestation]:
        """:meth:`list_attestations` as :class:`records.Attestation`."""
        params = {"predicate_type": predicate_type} if predicate_type else None
        path = self._version_path(parse_ref(ref)) + "/attestations"
        return self._records(records.Attestation, path, params)

    def list_identity_records(self) -> list[records.Identity]:
        """:meth:`list_identities` as :class:`records.Identity`."""
        return self._records(records.Identity, "/v1/identities")

    def policy_record(self, namespace: str) -> records.Policy:
        """:meth:`get_policy` (the policy in force) as a :class:`records.Policy`."""
        return self._record(records.Policy, f"/v1/namespaces/{namespace}/policy")

    def list_alias_records(self, namespace: str, name: str) -> list[records.Alias]:
        """:meth:`list_aliases` as :class:`records.Alias`."""
        path = f"/v1/namespaces/{namespace}/artifacts/{name}/aliases"
        return self._records(records.Alias, path)

    def alias_history_records(
        self, namespace: str, name: str, alias: str
    ) -> list[records.AliasMove]:
        """:meth:`alias_history` as :class:`records.AliasMove`."""
        path = f"/v1/namespaces/{namespace}/artifacts/{name}/aliases/{alias}/history"
        return self._records(records.AliasMove, path)

    def list_token_records(self) -> list[records.Token]:
        """:meth:`list_tokens` as :class:`records.Token`."""
        return self._records(records.Token, "/v1/tokens")

    # -- pushing ----------------------------------------------------------------------------

    def upload_blob(
        self, namespace: str, item: LocalFile, digest: str, *, progress: Progress | None = None
    ) -> None:
        """Upload one file as a blob in chunks.

        The session is recorded in the client's upload journal (:mod:`registry.sdk.resume`)
        until the blob is stored: a push run again after an interruption (a killed process, a
        lost replica, a store outage) continues that session from the registry's offset, through
        any replica. Within one run, a broken connection, a 503 or a chunk that lost a race
        resumes from the registry's offset (three times in a row without progress at most);
        failing for want of the registry leaves the session recorded for the next run. A session
        that vanished meanwhile (completed by a concurrent push of the same bytes, or expired)
        is started anew. A registry that refuses the upload (bad bytes, no permission…) gets the
        session cancelled and forgotten.
        """
        _push.upload_blob(self, namespace, item, digest, progress=progress)

    def commit_version(self, ref: str, kind: Kind, files: Sequence[FileDigest]) -> VersionPublic:
        from registry.wire import VersionPublic

        parsed = parse_ref(ref)
        body = {
            "kind": str(kind),
            "files": [{"path": f.path, "size": f.size, "digest": f.sha256.prefixed} for f in files],
        }
        response = self._request("PUT", self._version_path(parsed), json=body, idempotent=True)
        return VersionPublic.model_validate(response.json())

    def push(
        self,
        directory: Path,
        ref: str,
        *,
        kind: Kind = Kind.MODEL,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
        signer: Signer | None = None,
        signature: bytes | None = None,
        follow_symlinks_within: Path | None = None,
    ) -> VersionPublic:
        """Push every regular file under ``directory`` as version ``ref``.

        With ``follow_symlinks_within``, symlinks to regular files inside that directory are
        pushed as the bytes they point at, under the link's path (the signature covers those
        bytes); other symlinks are refused.

        With ``signer``, an OMS signature of the files is made from the digests already computed
        for the upload (nothing is read again) and attached. With ``signature`` (a bundle made by
        ``model_signing sign``), it is checked to cover exactly these files before anything is
        uploaded, then attached.

        Raises:
            InvalidReferenceError, InvalidNameError, InvalidPathError: bad input; nothing sent.
            ManifestMismatchError, SubjectMismatchError: ``signature`` covers other files.
            VersionConflictError: the version exists with other content.
            EvidenceRejectedError: the registry refused the signature (untrusted signer…).
        """
        return _push.push(self, directory, ref, kind=kind, progress=progress, on_total=on_total,
                          signer=signer, signature=signature,
                          follow_symlinks_within=follow_symlinks_within)  # fmt: skip

    def check_signer(self, signer: Signer, *, public_key_file: str = "PUBLIC_KEY.pem") -> None:
        """Refuse a signer whose evidence the registry would refuse, before anything is sent:
        a key that is no registered identity, or keyless signing when no Sigstore identity is
        registered (which certificate identity a Sigstore signer gets is known only once
        Fulcio issued it; the registry checks that one).

        Raises:
            EvidenceRejectedError: naming the key and the ``modelseal identity add`` that
                registers it.
            SigningError: a keyless signer without an OIDC identity token.
        """
        _push.check_signer(self, signer, public_key_file=public_key_file)

    def register_external(
        self,
        ref: str,
        files: Sequence[Mapping[str, Any]],
        *,
        kind: Kind = Kind.DATASET,
        signer: Signer | None = None,
    ) -> VersionPublic:
        """Register a version by manifest only: each file's ``path``, ``size``, ``sha256`` and
        the ``uri`` where its bytes live. Nothing is uploaded; the version is marked external.
        With ``signer``, an OMS signature over the declared digests is attached."""
        return _push.register_external(self, ref, files, kind=kind, signer=signer)

    # -- evidence ---------------------------------------------------------------------------

    def attach(self, ref: str, bundle: bytes) -> AttestationPublic:
        """Attach a signed bundle to a version (verified by the registry)."""
        from registry.wire import AttestationPublic

        response = self._request(
            "POST",
            self._version_path(parse_ref(ref)) + "/attestations",
            content=bundle,
            headers={"Content-Type": "application/json"},
        )
        return AttestationPublic.model_validate(response.json())

    def list_attestations(
        self, ref: str, predicate_type: str | None = None
    ) -> list[AttestationPublic]:
        from registry.wire import AttestationPublic

        params = {"predicate_type": predicate_type} if predicate_type else None
        data = self._all(self._version_path(parse_ref(ref)) + "/attestations", params)
        return [AttestationPublic.model_validate(a) for a in data]

    def get_attestation(self, ref: str, attestation_id: int) -> bytes:
        """The exact bytes of an attached bundle."""
        path = f"{self._version_path(parse_ref(ref))}/attestations/{attestation_id}"
        return self._request("GET", path).content

    def add_key_identity(self, name: str, public_key_pem: str) -> IdentityPublic:
        from registry.wire import IdentityPublic

        body = {"name": name, "public_key_pem": public_key_pem}
        return IdentityPublic.model_validate(
            self._request("POST", "/v1/identities", json=body).json()
        )

    def add_sigstore_identity(
        self, name: str, *, issuer: str, identity: str, regex: bool = False
    ) -> IdentityPublic:
        from registry.wire import IdentityPublic

        body = {
            "name": name,
            "sigstore_issuer": issuer,
            "sigstore_identity": identity,
            "regex": regex,
        }
        return IdentityPublic.model_validate(
            self._request("POST", "/v1/identities", json=body).json()
        )

    def _add_identity(self, body: dict[str, Any]) -> IdentityPublic:
        from registry.wire import IdentityPublic

        response = self._request("POST", "/v1/identities", json=body)
        return IdentityPublic.model_validate(response.json())

    def list_identities_with_keys(self) -> list[IdentityPublic]:
        """Identities including their public keys (for client-side verification)."""
        from registry.wire import IdentityPublic

        data = self._all("/v1/identities", {"with_keys": "true"})
        return [IdentityPublic.model_validate(i) for i in data]

    def list_identities(self) -> list[IdentityPublic]:
        from registry.wire import IdentityPublic

        data = self._all("/v1/identities")
        return [IdentityPublic.model_validate(i) for i in data]

    # -- policy and release -------------------------------------------------------------------

    def set_policy(self, namespace: str, document: str) -> PolicyPublic:
        from registry.wire import PolicyPublic

        response = self._request(
            "PUT",
            f"/v1/namespaces/{namespace}/policy",
            content=document.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        return PolicyPublic.model_validate(response.json())

    def get_policy(self, namespace: str, revision: int | None = None) -> PolicyPublic:
        from registry.wire import PolicyPublic

        params = {"revision": revision} if revision is not None else None
        response = self._request("GET", f"/v1/namespaces/{namespace}/policy", params=params)
        return PolicyPublic.model_validate(response.json())

    def release(self, ref: str, *, scan_wait: float = SCAN_WAIT_SECONDS) -> VersionPublic:
        """Run the release gate (ReleaseRefusedError lists every reason in ``facts``), once a
        version being scanned is scanned (:func:`.pull.wait_scanned`, up to ``scan_wait`` s)."""
        from registry.wire import VersionPublic

        path = self._version_path(parse_ref(ref)) + "/release"
        try:
            response = self._request("POST", path)
        except ScanPendingError:
            _pull.wait_scanned(self, ref, timeout=scan_wait)
            response = self._request("POST", path)
        return VersionPublic.model_validate(response.json())

    def reject(self, ref: str, reason: str) -> VersionPublic:
        from registry.wire import VersionPublic

        response = self._request(
            "POST", self._version_path(parse_ref(ref)) + "/reject", json={"reason": reason}
        )
        return VersionPublic.model_validate(response.json())

    def revoke(self, ref: str, reason: str) -> tuple[VersionPublic, list[str]]:
        """Revoke a released version; returns it and every version built on it (revoked with
        it). :meth:`revocation` has the whole answer."""
        body = self.revocation(ref, reason)
        return body.version, body.dependents

    def revocation(self, ref: str, reason: str) -> RevocationPublic:
        """Revoke a released version and, transitively, every release built on it: the versions
        revoked now (with the dependency each was revoked for) and the aliases now flagged."""
        from registry.wire import RevocationPublic

        response = self._request(
            "POST", self._version_path(parse_ref(ref)) + "/revoke", json={"reason": reason}
        )
        return RevocationPublic.model_validate(response.json())

    def registry_verifier(self, registry_key: bytes | None, pins: PinStore) -> Verifier:
        """A verifier of the registry's key: ``registry_key`` (PEM), else the key pinned for this
        registry on first contact (:attr:`on_pinned` is told when it is pinned).

        Raises:
            ResponseVerificationError: the registry now presents another key than the pinned one.
        """
        return _trust.registry_verifier(self, registry_key, pins)

    def version_status(
        self,
        version: VersionPublic,
        *,
        registry_key: bytes | None = None,
        pins: PinStore | None = None,
    ) -> dict[str, Any]:
        """The version's current state and its dependencies', as the registry signs it now.

        Checked against the registry key (``registry_key``, else the pinned one), the version
        and its root digest, and the freshness window (:attr:`status_max_age`: a replayed older
        status is refused once that old). The audit-log head it carries must extend the newest
        checkpoint this client saw (remembered in ``pins``), which then moves forward.

        Raises:
            ResponseVerificationError: naming what did not check out.
        """
        return _trust.version_status(self, version, registry_key=registry_key, pins=pins)

    def set_alias(self, namespace: str, name: str, alias: str, version: str) -> AliasMovePublic:
        from registry.wire import AliasMovePublic

        path = f"/v1/namespaces/{namespace}/artifacts/{name}/aliases/{alias}"
        response = self._request("PUT", path, json={"version": version})
        return AliasMovePublic.model_validate(response.json())

    def alias_history(self, namespace: str, name: str, alias: str) -> list[AliasMovePublic]:
        from registry.wire import AliasMovePublic

        path = f"/v1/namespaces/{namespace}/artifacts/{name}/aliases/{alias}/history"
        return [AliasMovePublic.model_validate(m) for m in self._all(path)]

    def list_aliases(self, namespace: str, name: str) -> list[AliasPublic]:
        from registry.wire import AliasPublic

        path = f"/v1/namespaces/{namespace}/artifacts/{name}/aliases"
        return [AliasPublic.model_validate(a) for a in self._all(path)]

    def create_token(
        self, name: str, role: str, namespace: str | None = None, expires_days: int | None = None
    ) -> TokenPublic:
        from registry.wire import TokenPublic

        body = {"name": name, "role": role, "namespace": namespace, "expires_days": expires_days}
        return TokenPublic.model_validate(self._request("POST", "/v1/tokens", json=body).json())

    def list_tokens(self) -> list[TokenPublic]:
        from registry.wire import TokenPublic

        return [TokenPublic.model_validate(t) for t in self._all("/v1/tokens")]

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token named by its id, ``ms_<id>``, or the whole token (reduced to its id
        before anything is sent: see :func:`token_id_of`)."""
        self._request("DELETE", f"/v1/tokens/{quote(token_id_of(token_id), safe='')}")

    # -- audit ------------------------------------------------------------------------------

    def audit_entries(self) -> list[dict[str, Any]]:
        """Every audit-log entry, in order."""
        entries: list[dict[str, Any]] = []
        path = "/v1/audit/log"
        while True:
            response = self._request("GET", path, params={"after": len(entries), "limit": 10_000})
            page = _decoded(response, path)
            if not isinstance(page, list) or not all(isinstance(e, dict) for e in page):
                raise InvalidRequestError(f"{path} did not answer a list of entries")
            entries.extend(page)
            if len(page) < 10_000:
                return entries

    def latest_checkpoint(self) -> bytes | None:
        """The newest signed audit checkpoint bundle, or None when none was signed yet."""
        try:
            return self._request("GET", "/v1/audit/checkpoints/latest").content
        except NotFoundError:
            return None

    def sign_checkpoint(self) -> dict[str, Any]:
        """Have the registry sign a checkpoint of the audit log now (registry-wide admins and
        auditors)."""
        return dict(self._request("POST", "/v1/audit/checkpoints").json())

    def in_toto(self, ref: str) -> dict[str, str]:
        """The registry-signed in-toto layout and links of a released version."""
        response = self._request("GET", self._version_path(parse_ref(ref)) + "/in-toto")
        return {str(k): str(v) for k, v in response.json().items()}

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    def verify_audit_log(
        self, *, registry_key: bytes | None = None, pins: PinStore | None = None
    ) -> tuple[int, str]:
        """Verify the whole chain and the newest checkpoint's signature locally, and that the
        log extends the newest signed checkpoint this client saw before (remembered in ``pins``
        beside the registry key); the newest one served is remembered from now on.

        Returns ``(entries, head)``.

        Raises:
            AuditRollbackError: the log is shorter than the remembered checkpoint, or its entry
                at that count no longer hashes to the remembered head (naming both checkpoints).
            AuditChainError: naming the first edited, removed or reordered entry.
        """
        return _trust.verify_audit_log(self, registry_key=registry_key, pins=pins)

    # -- pulling ----------------------------------------------------------------------------

    def pull(
        self,
        ref: str,
        target: Path,
        *,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
        durable: bool = True,
        registry_key: bytes | None = None,
        pending: bool = False,
        allow_downgrade: bool = False,
        unsafe_skip_verify: bool = False,
        pins: PinStore | None = None,
        local_policy: str | None = None,
        local_trust: Trust | None = None,
        replace: bool = False,
    ) -> VersionPublic:
        """Download a version into ``target`` only after verifying it, atomically.

        A released version needs a release attestation that verifies with the registry's key
        (``registry_key`` PEM, else the key pinned for this registry on first contact; a
        different key later is an error), names this version, and relied on an OMS manifest
        that lists exactly the files about to be fetched. With ``pending``, a pending version is
        served after its OMS signature verifies against the identities the namespace policy
        accepts for ``signature``. Rejected and revoked versions are never pulled. The
        transparency log (:mod:`registry.sdk.logcheck`) must prove the version's newest status
        event, a release naming a verified release bundle, in a checkpoint signed by the log key
        pinned on first contact, no older than :attr:`log_max_age`, cosigned by
        :attr:`witness_threshold` of :attr:`witnesses`, and extending the newest one remembered
        in ``pins``; behind an alias, the alias's newest logged move must name the version (a
        logged rollback is followed and told to :attr:`on_notice`; ``allow_downgrade`` changes
        nothing now). With ``local_policy`` and ``local_trust`` the whole release gate is
        re-run here, against the caller's own rules and signers, without trusting the server's
        verdict. ``unsafe_skip_verify`` skips the evidence and the log (never the digests).

        ``target`` must not exist or be an empty directory, unless ``replace``: then a directory
        there is swapped for the new, verified copy in one atomic exchange (the old copy stays
        in place until the new one is complete, and is removed after). Every file is hashed
        while it streams; only when all match is the temporary directory renamed to ``target``.
        With ``durable`` (the default) everything is fsynced before the rename (crash-safe).

        Raises:
            PullVerificationError: the version or its evidence did not check out.
            InvalidRequestError: ``target`` exists and is not an empty directory.
        """
        return _pull.pull(self, ref, target, progress=progress, on_total=on_total,
                          durable=durable, registry_key=registry_key, pending=pending,
                          allow_downgrade=allow_downgrade, unsafe_skip_verify=unsafe_skip_verify,
                          pins=pins, local_policy=local_policy, local_trust=local_trust,
                          replace=replace)  # fmt: skip

    def report_verification_failure(
        self, ref: str, reason: str, *, kind: str = "verification"
    ) -> None:
        """Tell the registry a verified pull failed (a security event), or with ``kind``
        ``not-released`` that it was refused for a version not released yet (counted apart).
        Best effort: a failure to report never hides the verification error itself."""
        try:
            self._request(
                "POST",
                "/v1/events/verification-failure",
                json={
                    "reference": ref[:512],
                    "reason": reason[:4000] or "unknown",
                    "kind": kind,
                },
            )
        except RegistryError:
            pass


def _decoded(response: httpx.Response, path: str) -> Any:
    """The JSON body of RESPONSE (to a GET of PATH).

    Raises:
        ResponseVerificationError: it is not JSON.
    """
    try:
        return response.json()
    except ValueError:
        raise records.malformed(
            f"GET {path}",
            f"not JSON ({response.headers.get('content-type', 'no content type')}, "
            f"{len(response.content)} bytes)",
        ) from None
