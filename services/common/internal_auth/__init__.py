"""Authenticated internal calls: who is calling, for which organization, allowed to do what.

Every internal gRPC call carries ``authorization: Bearer <jwt>``: an EdDSA (Ed25519)
JWT signed by the calling service's own private key, short-lived (60 s), addressed to
one service (``aud``), naming the organization it acts for (``org``). Each server
verifies the signature against the issuer's public keys, the audience and the expiry,
then consults one policy table (:mod:`.policy`) for what that issuer may call. The
organization a handler sees comes from the verified token only, never from a header.

A training worker holds no private key: the trainer mints it one token scoped to its
job and attempt (``sub=worker``), which it sends as is. That token lets it report on
that attempt and download that job's files, nothing else.

Why signed tokens rather than mutual TLS (both were on the table):
- a token says more than a certificate: the organization of this very call and, for a
  worker, the job, attempt and files it may touch. With mTLS the peer would be
  authenticated but the organization would still be an unauthenticated header;
- it works through any proxy, load balancer or service mesh (HTTP/2 metadata), where
  TLS is often terminated in between;
- rotation is adding a public key file (several per issuer are accepted, picked by
  ``kid``), then switching the private key; no CA, no restart of the peers;
- a stolen token is worth 60 s against one service (a worker's, one job until its
  deadline); the private key never leaves its service.
mTLS can be layered on later for transport encryption; it is orthogonal.

Layout (``make up`` creates it under ``<data_dir>/internal-auth/``; on Kubernetes the
private key is mounted at ``/etc/tailor/internal-auth/private.pem`` and the public keys
at ``/etc/tailor/internal-auth/public/``):
- ``TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE``: this process's Ed25519 private key (PEM);
- ``TAILOR_INTERNAL_AUTH_PUBLIC_KEYS_DIR``: ``<issuer>*.pem`` public keys (e.g.
  ``gateway.pem``, ``gateway-2027.pem``), issuer one of gateway/trainer/dataset/inference;
- ``TAILOR_INTERNAL_AUTH_IDENTITY``: the issuer name this process signs as.
"""

from services.common.internal_auth.keys import (
    IDENTITIES,
    generate_key_pair,
    key_id,
    load_private_key,
    load_public_keys,
    write_key_pair,
)
from services.common.internal_auth.tokens import (
    Principal,
    TokenMinter,
    TokenVerifier,
    mint_worker_token,
)

__all__ = [
    "IDENTITIES",
    "Principal",
    "TokenMinter",
    "TokenVerifier",
    "generate_key_pair",
    "key_id",
    "load_private_key",
    "load_public_keys",
    "mint_worker_token",
    "write_key_pair",
]
