"""The CPF (Cadastro de Pessoas Físicas): its check digits, and how it is stored — a keyed hash to find a patient by
it, the value encrypted to show its owner and staff a masked form. It is never stored in clear."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def digits(value: str) -> str:
    """The 11 digits of a CPF written with or without its dots and dash (123.456.789-09 or 12345678909)."""
    return value.replace(".", "").replace("-", "").strip()


def is_valid(value: str) -> bool:
    """Eleven digits, not all the same (111.111.111-11 passes the arithmetic but is no CPF), both check digits right:
    each is 11 - (weighted sum mod 11), 0 when that is 10 or 11; weights 10..2 then 11..2."""
    number = digits(value)
    if len(number) != 11 or not number.isascii() or not number.isdigit() or len(set(number)) == 1:
        return False
    for size in (9, 10):
        total = sum(int(d) * weight for d, weight in zip(number[:size], range(size + 1, 1, -1), strict=True))
        if (total * 10 % 11) % 10 != int(number[size]):
            return False
    return True


def masked(number: str) -> str:
    """Only the check digits show: ***.***.***-09."""
    return f"***.***.***-{number[-2:]}"


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret.encode())


@dataclass(frozen=True)
class CpfVault:
    """Two keys derived from one secret (settings.privacy.data_key): one for the lookup hash, one for encryption, so
    neither use weakens the other."""

    lookup_key: bytes
    fernet: Fernet

    @classmethod
    def from_secret(cls, secret: str) -> CpfVault:
        encryption_key = base64.urlsafe_b64encode(_derive(secret, b"clinic cpf encryption v1"))
        return cls(_derive(secret, b"clinic cpf lookup v1"), Fernet(encryption_key))

    def lookup_hash(self, cpf: str) -> str:
        """HMAC-SHA256: equal for equal CPFs, useless without the key (a plain hash of 10^9 CPFs is brute-forced in
        seconds)."""
        return hmac.new(self.lookup_key, digits(cpf).encode(), hashlib.sha256).hexdigest()

    def encrypt(self, cpf: str) -> str:
        return self.fernet.encrypt(digits(cpf).encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self.fernet.decrypt(token.encode()).decode()
        except InvalidToken:  # another key than the one that wrote it: say so rather than show garbage
            raise ValueError("a stored CPF cannot be decrypted with privacy.data_key (was the key changed?)") from None
