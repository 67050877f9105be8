"""Property tests: the keyword codec, the merge with a user's keywords, the UserComment record reader.
Any input either round-trips or is rejected with our own error; nothing else ever escapes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from phototag.tags.exif import CodecError, TagRecord, decode_xp, encode_xp, merge_keywords

keyword = st.text(min_size=1, max_size=40).filter(lambda k: k.strip() == k and k)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=8))
def test_keyword_codec_round_trips_or_refuses(keywords):
    try:
        encoded = encode_xp(keywords)
    except CodecError:
        assert any(";" in k or "\x00" in k or not k.strip() or any(0xD800 <= ord(c) <= 0xDFFF for c in k)
                   for k in keywords)
        return
    assert decode_xp(encoded) == [k.strip() for k in keywords]
    assert bytes(encoded).endswith(b"\x00\x00") and len(encoded) % 2 == 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_keywords_without_crashing(raw):
    out = decode_xp(raw)
    assert all(isinstance(k, str) and k and ";" not in k for k in out)


@settings(max_examples=300, deadline=None)
@given(st.lists(keyword, max_size=6, unique=True), st.lists(keyword, max_size=4, unique=True),
       st.lists(keyword, max_size=4, unique=True))
def test_merge_keeps_the_users_keywords_in_order_and_ours_once(users, ours, previously_ours):
    existing = users + [k for k in previously_ours if k not in users]
    merged = merge_keywords(existing, ours, previously_ours)
    kept = [k for k in existing if k not in previously_ours]
    assert merged[: len(kept)] == kept  # the user's, in their order
    assert len(merged) == len(set(merged))  # nothing twice
    assert set(ours) <= set(merged)
    assert not (set(previously_ours) - set(ours) - set(kept)) & set(merged)  # our old ones gone


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda b: b"ASCII\x00\x00\x00" + b'{"phototag"' + b, st.binary(max_size=200)),
                 st.builds(lambda t: b"UNICODE\x00" + t.encode("utf-16-le", "surrogatepass"), st.text(max_size=50))))
def test_user_comment_reader_returns_ours_none_or_our_error(raw):
    try:
        rec = TagRecord.from_comment(raw)
    except CodecError:
        return
    assert rec is None or isinstance(rec, TagRecord)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.text(max_size=20), st.lists(keyword, max_size=4),
       st.lists(st.dictionaries(st.sampled_from(["box", "age", "group"]), st.integers() | st.text(max_size=8)),
                max_size=3))
def test_our_record_round_trips(model, scheme, keywords, faces):
    rec = TagRecord(model=model, scheme=scheme, keywords=keywords, faces=faces)
    assert TagRecord.from_comment(rec.to_comment()) == rec
