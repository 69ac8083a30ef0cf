"""The error tree. User mistakes raise a subclass of RecengineError with a message that says what to do."""


class RecengineError(Exception):
    """Base class of every error recengine raises on purpose."""


class DataError(RecengineError, ValueError):
    """Input data is malformed, inconsistent or missing a required part."""


class ConfigError(RecengineError, ValueError):
    """A parameter, option or setting has an invalid value."""


class NotFittedError(RecengineError, AttributeError):
    """A model was used before `fit` (or `load`)."""


class ArtifactError(RecengineError):
    """A saved model or dataset directory is missing, incomplete or of an unknown format."""


class NotSupportedError(RecengineError):
    """The model does not offer this operation (e.g. item similarity or explanations)."""


class UnknownIdError(DataError):
    """A user or item id is not in the data (a typo, or data the model was not trained on)."""
