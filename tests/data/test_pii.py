"""Patient identifiers are masked with typed placeholders; clinical numbers are left alone."""

from __future__ import annotations

from collections import Counter

import pytest

from medgo.data.pii import PII_TYPES, scrub_pii, scrub_pii_values, scrub_preview

WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]  # ISO 7064 MOD 11-2 weights for positions 1..17


def resident_id(first17: str) -> str:
    """Append the ISO 7064 MOD 11-2 check character (computed here, independently of medgo)."""
    remainder = (12 - sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11) % 11
    return first17 + ("X" if remainder == 10 else str(remainder))


def luhn_number(body: str) -> str:
    """Append the Luhn check digit to ``body``."""
    for check in "0123456789":
        digits = [int(c) for c in reversed(body + check)]
        if (sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])) % 10 == 0:
            return body + check
    raise AssertionError("unreachable")


VALID_ID = resident_id("11010519491231002")
ID_ENDING_IN_X = next(
    i for i in (resident_id(f"44030419850612{n:03d}") for n in range(1000)) if i.endswith("X")
)
BAD_CHECKSUM_ID = VALID_ID[:17] + str((int(VALID_ID[17]) + 1) % 10 if VALID_ID[17] != "X" else 0)
CARD = luhn_number("622202123456789012")  # 19 digits
CARD_16 = luhn_number("453201511283036")


def test_generated_fixtures_are_what_they_claim():
    assert WEIGHTS == [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    assert len(VALID_ID) == 18 and ID_ENDING_IN_X.endswith("X") and BAD_CHECKSUM_ID != VALID_ID
    assert len(CARD) == 19 and len(CARD_16) == 16


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        (f"身份证{VALID_ID}已核对", "身份证<ID>已核对", "ID"),
        (f"证件号码：{ID_ENDING_IN_X.lower()}。", "证件号码：<ID>。", "ID"),
        ("身份证号：110105491231002，为一代证", "身份证号：<ID>，为一代证", "ID"),
        ("联系电话13812345678，", "联系电话<PHONE>，", "PHONE"),
        ("手机：+86 139-1234-5678", "手机：<PHONE>", "PHONE"),
        ("座机010-62345678转内科", "座机<PHONE>转内科", "PHONE"),
        ("电话(0571)87654321", "电话<PHONE>", "PHONE"),
        ("邮箱 zhang.san@hospital.com.cn 联系", "邮箱 <EMAIL> 联系", "EMAIL"),
        (f"银行卡号{CARD}，", "银行卡号<BANK_CARD>，", "BANK_CARD"),
        (
            f"卡号 {CARD_16[:4]} {CARD_16[4:8]} {CARD_16[8:12]} {CARD_16[12:]} 已退费",
            "卡号 <BANK_CARD> 已退费",
            "BANK_CARD",
        ),
        ("住院号：ZY20230815，", "住院号：<MRN>，", "MRN"),
        ("病案号为00123456", "病案号为<MRN>", "MRN"),
        ("门诊号 MZ-2023-0042。", "门诊号 <MRN>。", "MRN"),
        ("患者张某某，男，45岁", "患者<NAME>，男，45岁", "NAME"),
        ("病人李某因胸痛就诊", "病人<NAME>因胸痛就诊", "NAME"),
        ("患者王小明，男，45岁，因头痛入院", "患者<NAME>，男，45岁，因头痛入院", "NAME"),
        ("患儿欧阳娜娜，女，6岁", "患儿<NAME>，女，6岁", "NAME"),
        ("姓名：陈建国，性别：男", "姓名：<NAME>，性别：男", "NAME"),
        ("姓名：刘芳 年龄：32", "姓名：<NAME> 年龄：32", "NAME"),
        ("您好，王先生，请按时服药", "您好，<NAME>先生，请按时服药", "NAME"),
        ("紧急联系人：妻子刘芳，手机", "紧急联系人：妻子<NAME>，手机", "NAME"),
        ("家属：李华（女儿）", "家属：<NAME>（女儿）", "NAME"),
        ("家庭住址：北京市海淀区中关村大街27号，", "家庭住址：<ADDRESS>，", "ADDRESS"),
        ("住址：上海市徐汇区宛平南路600号3号楼\n", "住址：<ADDRESS>\n", "ADDRESS"),
        ("出生日期：1990-03-07，", "出生日期：<DOB>，", "DOB"),
        ("生日是1985年6月1日。", "生日是<DOB>。", "DOB"),
    ],
)
def test_each_identifier_type_is_masked_and_counted(text, expected, kind):
    scrubbed, counts = scrub_pii(text)
    assert scrubbed == expected
    assert counts == Counter({kind: 1})


@pytest.mark.parametrize(
    "text",
    [
        "阿莫西林胶囊0.5g，一日3次，每次500mg，静滴250ml",
        "白细胞12.5×10^9/L，血红蛋白98g/L，血小板210×10^9/L",
        "诊断：I10 原发性高血压；E11.9 2型糖尿病；J18.9 肺炎",
        "批准文号：国药准字H20003263，国药准字Z11020001",
        f"订单编号{BAD_CHECKSUM_ID}已生成",
        "2023年10月1日14:30入院，2024-01-15复查，随访至2025年",
        "血压150/95mmHg，心率88次/分，体温38.5℃，SpO2 96%",
        "编号123456789012345678901234号样本",
        "患者高热，体温39℃；患者于今日入院；患者于X线检查示肺纹理增多",
        "指南推荐：患者应在医生指导下用药",
        "家属要求复印病历；父亲有糖尿病史",
        "患者家属：医生您好，孩子两岁半，昨晚开始发烧",
        "请拨打心理援助热线12356，或北京心理危机研究与干预中心热线010-82951332，急救请拨120",
        "使用患者资料时，应对姓名、身份证号码、联系方式、住址等信息进行去标识化处理",
    ],
)
def test_clinical_numbers_and_ordinary_text_are_left_intact(text):
    assert scrub_pii(text) == (text, Counter())


@pytest.mark.parametrize(
    "text",
    [
        "患者高血压，男，65岁",
        "患者黄疸，女，2岁",
        "患者高热，男，3岁",
        "患者高烧，女，4岁",
        "患者高血糖，男，70岁",
        "患者于今日，男",
        "患者于某日入院，女，50岁",
        "患者曾于，男",
        "患者常规，女",
        "患者左侧，男",
        "家属：黄疸",
        "姓名：高血压，",
    ],
)
def test_clinical_terms_and_function_words_after_a_role_word_are_not_names(text):
    assert scrub_pii(text) == (text, Counter())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("患者王小明，男，45岁", "患者<NAME>，男，45岁"),
        ("患者张某某", "患者<NAME>"),
        ("患者高某，男", "患者<NAME>，男"),
        ("患者高明，男，50岁", "患者<NAME>，男，50岁"),
        ("患者黄晓燕，女，33岁", "患者<NAME>，女，33岁"),
        ("患者于小明，男，45岁", "患者<NAME>，男，45岁"),
        ("患者于某某，男", "患者<NAME>，男"),
        ("患者高某某因高热入院", "患者<NAME>因高热入院"),
        ("家属：黄小华（女儿）", "家属：<NAME>（女儿）"),
    ],
)
def test_real_names_sharing_a_surname_with_clinical_terms_stay_masked(text, expected):
    assert scrub_pii(text) == (expected, Counter({"NAME": 1}))


def test_preview_masks_identifiers_before_cutting():
    text = "x" * 190 + VALID_ID + "电话13812345678"
    preview = scrub_preview(text, 200)
    assert preview == "x" * 190 + "<ID>电话<PHO"
    assert VALID_ID[:10] not in preview


def test_preview_of_a_very_long_line_is_bounded_and_scrubbed():
    text = f"身份证{VALID_ID}，手机13912345678。" + "病" * 1_000_000
    preview = scrub_preview(text, 200)
    assert len(preview) == 200 and preview.startswith("身份证<ID>，手机<PHONE>。病")
    assert scrub_preview("短", 200) == "短"


def test_every_string_in_nested_metadata_is_scrubbed_and_counted():
    meta = {"hospital": "H1", "note": "联系电话13812345678", "visits": [{"doctor": "王先生"}, 3], "n": 2}
    scrubbed, counts = scrub_pii_values(meta)
    assert scrubbed == {
        "hospital": "H1",
        "note": "联系电话<PHONE>",
        "visits": [{"doctor": "<NAME>先生"}, 3],
        "n": 2,
    }
    assert counts == Counter({"PHONE": 1, "NAME": 1})
    assert meta["note"] == "联系电话13812345678"  # the input is not modified


def test_checksum_valid_number_with_impossible_birth_date_is_not_an_id():
    not_a_date = resident_id("11010519491399002")  # month 13
    assert scrub_pii(f"编号{not_a_date}")[0] == f"编号{not_a_date}"


def test_mobile_number_inside_a_longer_digit_run_is_not_a_phone():
    assert scrub_pii("流水号2013812345678901")[1]["PHONE"] == 0


def test_a_valid_id_is_never_reported_as_a_bank_card():
    _, counts = scrub_pii(f"号码{VALID_ID}")
    assert counts == Counter({"ID": 1})


def test_a_record_with_many_identifiers_masks_all_and_counts_per_type():
    text = (
        f"患者张某某，女，62岁，住院号：ZY20230815，身份证号{VALID_ID}，电话13912345678，"
        f"家庭住址：杭州市西湖区文三路100号。出生日期：1961-05-20。阿司匹林100mg qd。"
    )
    scrubbed, counts = scrub_pii(text)
    assert scrubbed == (
        "患者<NAME>，女，62岁，住院号：<MRN>，身份证号<ID>，电话<PHONE>，"
        "家庭住址：<ADDRESS>。出生日期：<DOB>。阿司匹林100mg qd。"
    )
    assert counts == Counter({"NAME": 1, "MRN": 1, "ID": 1, "PHONE": 1, "ADDRESS": 1, "DOB": 1})
    assert set(counts) <= set(PII_TYPES)


def test_record_number_labels_come_from_the_caller():
    text = "住院号：ZY001，影像号：CT9876"
    assert scrub_pii(text, record_number_prefixes=["影像号"])[0] == "住院号：ZY001，影像号：<MRN>"
    assert scrub_pii(text, record_number_prefixes=[])[0] == text
