"""A streaming ``multipart/form-data`` reader: form fields and file bytes as they arrive.

Starlette's ``request.form()`` spools a whole upload (to memory, then a temporary file)
before the route sees it. Uploads here are forwarded to the dataset service while they
arrive instead, so this wraps python-multipart's push parser around the request's body
stream and yields :class:`FormField`, :class:`FileStart`, :class:`FileData` and
:class:`FileEnd` events in body order. Memory stays bounded: file bytes are passed on as
they come, and a form field (a short text value) is refused beyond ``max_field_bytes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.gateway.errors import invalid_request

MAX_FIELD_BYTES = 64 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class FormField:
    """A complete text field."""

    name: str
    value: str


@dataclass(frozen=True)
class FileStart:
    """A file part begins (a part whose Content-Disposition has a ``filename``)."""

    name: str
    filename: str


@dataclass(frozen=True)
class FileData:
    """The next bytes of the current file part."""

    data: bytes


@dataclass(frozen=True)
class FileEnd:
    """The current file part is complete."""


Event = FormField | FileStart | FileData | FileEnd


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; 400 for anything else."""
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise invalid_request(
            "Uploads must be sent as multipart/form-data with a 'file' part and a 'purpose' field."
        )
    return boundary


class MultipartReader:
    """Turns a multipart body stream into events; see the module docstring."""

    def __init__(
        self, content_type: str, body: AsyncIterable[bytes], *, max_field_bytes: int = MAX_FIELD_BYTES
    ) -> None:
        self._body = body
        self._max_field_bytes = max_field_bytes
        self._events: list[Event] = []
        self._ended = False
        # the part being read
        self._headers: dict[str, str] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._field_name: str | None = None  # set while reading a text field
        self._field_value = bytearray()
        self._in_file = False
        self._parser = MultipartParser(
            boundary_of(content_type),
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
            max_header_size=MAX_PART_HEADER_BYTES,
        )

    async def events(self) -> AsyncIterator[Event]:
        """The events, in body order; 400 when the body is not well-formed or ends early."""
        async for chunk in self._body:
            try:
                self._parser.write(chunk)
            except MultipartParseError as error:
                raise invalid_request(f"The multipart body is malformed: {error}") from None
            events, self._events = self._events, []
            for event in events:
                yield event
            if self._ended:
                return
        if not self._ended:
            raise invalid_request("The multipart body ended before its closing boundary.")

    # -- parser callbacks (python-multipart hands out slices of its input buffer) ------------

    def _on_part_begin(self) -> None:
        self._headers = {}
        self._field_name = None
        self._field_value.clear()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode(
            "utf-8", "replace"
        )
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        disposition, name, filename = _content_disposition(self._headers.get("content-disposition", ""))
        if disposition != "form-data" or name is None:
            raise invalid_request(
                "Every multipart part needs a 'Content-Disposition: form-data; name=...' header."
            )
        if filename is not None:
            self._in_file = True
            self._events.append(FileStart(name, filename))
        else:
            self._field_name = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._events.append(FileData(data[start:end]))
            return
        self._field_value += data[start:end]
        if len(self._field_value) > self._max_field_bytes:
            raise invalid_request(
                f"The form field '{self._field_name}' is longer than {self._max_field_bytes} bytes.",
                param=self._field_name,
            )

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._events.append(FileEnd())
        elif self._field_name is not None:
            value = self._field_value.decode("utf-8", "replace")
            self._events.append(FormField(self._field_name, value))

    def _on_end(self) -> None:
        self._ended = True


def _content_disposition(header: str) -> tuple[str | None, str | None, str | None]:
    """(disposition, name, filename) of a part's Content-Disposition, filenames in any Unicode.

    Browsers and HTTP clients send a filename as raw UTF-8 between quotes (RFC 7578 4.2);
    some send RFC 5987's ``filename*=UTF-8''...`` as well or instead, which wins when both
    are there (RFC 6266 4.3). The standard library's MIME parser reads both; the header
    reaches here already decoded from UTF-8.
    """
    message = Message()
    message["Content-Disposition"] = header
    disposition = message.get_content_disposition()
    params = message.get_params(header="content-disposition", failobj=[])
    name = next((value for key, value in params[1:] if key == "name" and isinstance(value, str)), None)
    filenames = [value for key, value in params[1:] if key == "filename"]
    extended = [value for value in filenames if isinstance(value, tuple)]
    filename = collapse_rfc2231_value(extended[-1] if extended else filenames[-1]) if filenames else None
    return disposition, name, filename
