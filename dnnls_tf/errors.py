"""Errors that the command line reports as one line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a config, a data folder, an argument or a store."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


class StoreError(UserError):
    pass
