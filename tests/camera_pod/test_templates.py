import json

import pytest

from camera_pod.mpta import templates

VALUES = {"session_id": "abc", "display_id": 'disp"1\\x', "confidence": 0.93, "image_key": "inference:k",
          "car_brand_cls_v1.brand": "Toyota", "count": 3}


def test_plain_template_fills_placeholders() -> None:
    assert templates.render("inference:{display_id}:{session_id}", VALUES) == 'inference:disp"1\\x:abc'


def test_branch_placeholders() -> None:
    assert templates.render("{car_brand_cls_v1.brand}", VALUES) == "Toyota"


def test_spec_example_json_template_is_valid_json_with_escaped_values() -> None:
    template = '{"event":"frontal_detected","session":"{session_id}","image":"{image_key}","d":"{display_id}"}'
    rendered = templates.render(template, VALUES)
    assert json.loads(rendered) == {"event": "frontal_detected", "session": "abc", "image": "inference:k",
                                    "d": 'disp"1\\x'}


def test_unquoted_placeholder_in_json_keeps_its_type() -> None:
    rendered = templates.render('{"confidence": {confidence}, "n": {count}, "s": {session_id}}', VALUES)
    assert json.loads(rendered) == {"confidence": 0.93, "n": 3, "s": "abc"}


def test_none_renders_as_null_in_json_and_empty_in_text() -> None:
    values = {**VALUES, "session_id": None}
    assert json.loads(templates.render('{"s":"{session_id}","t":{session_id}}', values)) == {"s": "", "t": None}
    assert templates.render("k:{session_id}", values) == "k:"


def test_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(templates.TemplateError, match=r"unknown placeholder \{nope\}"):
        templates.render("x{nope}", VALUES)


@pytest.mark.parametrize("template", ["{session_id}", "plain", "{a b}", "{ x }"])
def test_not_json_templates(template: str) -> None:
    assert not templates.is_json_template(template)


def test_placeholders_are_listed_with_branch_and_field() -> None:
    found = templates.placeholders("{a}-{car_brand_cls_v1.brand}")
    assert [(p.branch, p.field) for p in found] == [(None, "a"), ("car_brand_cls_v1", "brand")]


def test_a_column_of_one_missing_placeholder_is_null_and_any_other_template_renders() -> None:
    values = {**VALUES, "plate_ocr.text": None, "plate_ocr.confidence": None, "session_id": None}
    assert templates.column_value("{plate_ocr.text}", values) is None  # a plate not read: NULL, not ''
    assert templates.column_value("{session_id}", values) is None
    assert templates.column_value("{car_brand_cls_v1.brand}", values) == "Toyota"  # the original's fields: as before
    assert templates.column_value("{count}", values) == "3"
    assert templates.column_value("plate {plate_ocr.text}", values) == "plate "  # inside a text: '' as in render
    assert templates.column_value(" {plate_ocr.text}", values) == " "
    assert templates.column_value("{plate_ocr.text}{session_id}", values) == ""
    assert templates.column_value("NOW()", values) == "NOW()"
    assert json.loads(templates.column_value('{"p": {plate_ocr.text}}', values) or "") == {"p": None}
    with pytest.raises(templates.TemplateError, match=r"unknown placeholder \{nope\}"):
        templates.column_value("{nope}", values)
