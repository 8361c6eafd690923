class OnnxImportError(ValueError):
    pass


def load(path):
    raise NotImplementedError
