"""Where the verification lists come from: paths or URLs, fetched once.

Authors
 * speechbrain-trkd developers 2026
"""

import os
import urllib.parse
import urllib.request

from speechbrain.utils.data_utils import download_file
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def as_path_list(value):
    """A list of non-empty strings from a list or a comma-separated string.

    Arguments
    ---------
    value : str, os.PathLike or sequence
        One path, several comma-separated, or a list of them.

    Returns
    -------
    list of str

    Example
    -------
    >>> as_path_list("/data/vox1, /data/vox2")
    ['/data/vox1', '/data/vox2']
    >>> as_path_list(["a.txt"])
    ['a.txt']
    >>> import tempfile
    >>> odd = os.path.join(tempfile.mkdtemp(), "vox,1")
    >>> os.mkdir(odd)
    >>> as_path_list(odd)
    Traceback (most recent call last):
    ...
    ValueError: '.../vox,1' is one existing path whose name holds a comma, ...
    """
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if "," in text and os.path.exists(text.strip()):
            raise ValueError(
                f"{text!r} is one existing path whose name holds a comma, "
                "but a comma separates several paths here: rename it, or "
                "give it through a link without a comma"
            )
        value = text.split(",")
    items = [str(item).strip() for item in value]
    items = [item for item in items if item]
    if not items:
        raise ValueError(f"Expected one or more paths, got {value!r}")
    return items


def fetch_verification_list(source, save_folder):
    """Returns a local path for a verification list, downloading URLs.

    An http(s) or file URL is fetched with SpeechBrain's ``download_file``
    into ``save_folder/<file name>`` (kept there: a later call reuses it),
    through a ``.part`` file renamed once complete, so that an interrupted
    download is never taken for the list. A local path is checked and
    returned as is.

    Arguments
    ---------
    source : str
        Path or URL of the list.
    save_folder : str
        Download folder.

    Returns
    -------
    str
        Path of the local file.

    Example
    -------
    >>> import pathlib, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> listed = os.path.join(tmp, "veri.txt")
    >>> _ = open(listed, "w").write("1 a/b/1.wav a/c/2.wav\\n")
    >>> local = fetch_verification_list(
    ...     pathlib.Path(listed).as_uri(), os.path.join(tmp, "save"))
    >>> open(local).read()
    '1 a/b/1.wav a/c/2.wav\\n'
    """
    if not is_url(source):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"Verification list {source} not found")
        return source
    url = urllib.parse.urlparse(source)
    name = os.path.basename(url.path)
    if not name:
        raise ValueError(f"Verification list URL {source} names no file")
    destination = os.path.join(save_folder, name)
    if os.path.isfile(destination):
        return destination
    partial = destination + ".part"
    # download_file copies a local path and fetches an http(s) URL.
    if url.scheme.lower() == "file":
        remote = urllib.request.url2pathname(url.path)
    else:
        remote = source
    try:
        download_file(remote, partial, replace_existing=True)
    except (OSError, ValueError) as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise FileNotFoundError(
            f"Could not download verification list {source}: {error}"
        ) from error
    os.replace(partial, destination)
    logger.info(f"Downloaded {source} to {destination}")
    return destination


def is_url(source):
    """True for http(s) and file URLs.

    Example
    -------
    >>> is_url("https://x.org/veri.txt"), is_url("trials/O.txt")
    (True, False)
    """
    scheme = urllib.parse.urlparse(source).scheme.lower()
    return scheme in ("http", "https", "file")


def canonical_source(source):
    """URLs as given, local paths made absolute (for the options file).

    Example
    -------
    >>> canonical_source("file:///a/O.txt")
    'file:///a/O.txt'
    >>> os.path.isabs(canonical_source("O.txt"))
    True
    """
    return source if is_url(source) else os.path.abspath(source)


def check_distinct_downloads(sources):
    """Raises when two URLs would download to the same file name.

    Example
    -------
    >>> check_distinct_downloads(["https://a.org/O.txt", "https://b.org/H.txt"])
    >>> check_distinct_downloads(["https://a.org/O.txt", "https://b.org/O.txt"])
    Traceback (most recent call last):
    ...
    ValueError: Verification lists https://a.org/O.txt and ... both ...
    """
    seen = {}
    for source in sources:
        if is_url(source):
            name = os.path.basename(urllib.parse.urlparse(source).path)
            if name in seen and seen[name] != source:
                raise ValueError(
                    f"Verification lists {seen[name]} and {source} would "
                    f"both be downloaded as {name}; download one of them "
                    "yourself and give its local path"
                )
            seen[name] = source
