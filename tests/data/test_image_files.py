"""The one image lookup: extension order, missing images, and image_path's fallback name."""

from wilddet.data.image_files import find_image, image_path


def test_find_image_takes_the_first_extension_that_exists(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpeg").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "c.jpg").write_bytes(b"")
    (tmp_path / "c.png").write_bytes(b"")
    assert find_image(tmp_path, "a") == tmp_path / "a.png"
    assert find_image(tmp_path, "b") == tmp_path / "b.jpeg"
    assert find_image(tmp_path, "c") == tmp_path / "c.jpg"
    assert find_image(tmp_path, "missing") is None


def test_image_path_names_the_jpg_when_nothing_exists(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    assert image_path(tmp_path, "a") == tmp_path / "a.png"
    assert image_path(tmp_path, "missing") == tmp_path / "missing.jpg"
