"""ZeroMQ CURVE authentication and encryption for evstream's event streams.

``evstream keys DIR`` writes two key pairs in ZeroMQ's certificate format:

* ``DIR/publisher.key`` / ``publisher.key_secret``: the publisher's (the CURVE server's);
* ``DIR/subscriber.key`` / ``subscriber.key_secret``: the subscriber's (the CURVE client's);
* ``DIR/authorized/subscriber.key``: the subscribers the publisher accepts (add more public keys
  here for more subscribers).

``evstream publish --curve-keys DIR`` binds a CURVE server socket with the publisher's secret key
and admits only the clients whose public keys are in ``DIR/authorized`` (a ZAP authenticator
thread). ``evstream run --source tcp://... --curve-keys DIR`` connects as a CURVE client with the
subscriber's key pair and the publisher's public key: a publisher without CURVE, or with another
key, never completes the handshake, so nothing it sends is read. Traffic is encrypted. Secret key
files are written owner-readable only (0600).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PUBLISHER, SUBSCRIBER, AUTHORIZED = "publisher", "subscriber", "authorized"


class CurveKeyError(ValueError):
    """A keys folder that cannot be used (missing or unreadable files)."""


def _zmq():
    import zmq

    if not zmq.has("curve"):
        raise CurveKeyError("this libzmq was built without CURVE support (zmq.has('curve') is False)")
    import zmq.auth

    return zmq


def generate_keys(folder, force: bool = False) -> dict:
    """Writes the two key pairs and the authorized-subscribers folder; returns their paths."""
    zmq = _zmq()
    root = Path(folder)
    existing = [
        root / f"{n}.key_secret" for n in (PUBLISHER, SUBSCRIBER) if (root / f"{n}.key_secret").exists()
    ]
    if existing and not force:
        raise CurveKeyError(f"{existing[0]} exists; give --force to replace the keys in {root}")
    root.mkdir(parents=True, exist_ok=True)
    (root / AUTHORIZED).mkdir(exist_ok=True)
    paths = {}
    umask = os.umask(0o077)  # the secret files are never readable by others, not even briefly
    try:
        for name in (PUBLISHER, SUBSCRIBER):
            public, secret = zmq.auth.create_certificates(root, name)
            os.chmod(public, 0o644)
            os.chmod(secret, 0o600)
            paths[name] = {"public": public, "secret": secret}
    finally:
        os.umask(umask)
    shutil.copy(paths[SUBSCRIBER]["public"], root / AUTHORIZED / f"{SUBSCRIBER}.key")
    paths["authorized"] = str(root / AUTHORIZED)
    return paths


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    zmq = _zmq()
    if not path.is_file():
        raise CurveKeyError(f"{path}: no such key file (make the keys with: evstream keys {path.parent})")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"{path}: not a ZeroMQ certificate ({exc})") from None
    if secret and not secret_key:
        raise CurveKeyError(f"{path}: has no secret key")
    return public, secret_key


def make_server(sock, folder) -> object:
    """Turns ``sock`` (before bind) into a CURVE server with the publisher's key that admits only
    the public keys in ``folder/authorized``; returns the authenticator (stop it after use)."""
    _zmq()
    from zmq.auth.thread import ThreadAuthenticator

    root = Path(folder)
    public, secret = _load(root / f"{PUBLISHER}.key_secret", secret=True)
    allowed = root / AUTHORIZED
    if not allowed.is_dir() or not any(allowed.glob("*.key")):
        raise CurveKeyError(f"{allowed}: no authorized subscriber keys (*.key)")
    auth = ThreadAuthenticator(sock.context)  # ZAP covers the sockets of its own context only
    auth.start()
    try:
        auth.configure_curve(domain="*", location=str(allowed))
    except BaseException:
        auth.stop()
        raise
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


def make_client(sock, folder) -> None:
    """Turns ``sock`` (before connect) into a CURVE client with the subscriber's key pair that
    only talks to the publisher whose public key is ``folder/publisher.key``."""
    root = Path(folder)
    public, secret = _load(root / f"{SUBSCRIBER}.key_secret", secret=True)
    server_public, _ = _load(root / f"{PUBLISHER}.key", secret=False)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public
