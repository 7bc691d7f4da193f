"""Typed renderer errors. Each carries a message fit to show a user as-is."""


class RendererError(Exception):
    """Base class for everything the renderer raises on purpose."""


class RendererInputError(RendererError):
    """The caller's media cannot be rendered (bad file, no face...): a 400, not a 500."""


class UnsupportedMediaError(RendererInputError):
    """The bytes are not a format we accept (sniffed from content, not the file name)."""


class ImageDecodeError(RendererInputError):
    """The image is empty, truncated or otherwise undecodable."""


class ImageTooLargeError(RendererInputError):
    """The image has so many pixels that decoding it would be a decompression bomb."""


class NoFaceError(RendererInputError):
    def __init__(self) -> None:
        super().__init__("no face detected")


class FaceTooSmallError(RendererInputError):
    def __init__(self, *, face_px: int, min_px: int) -> None:
        super().__init__(f"face too small: it is {face_px} px wide, the minimum is {min_px} px")
        self.face_px = face_px
        self.min_px = min_px


class AudioDecodeError(RendererInputError):
    """The audio is empty, silent-by-truncation or undecodable."""


class ModelError(RendererError):
    """A model file is missing or does not match the expected contract."""
