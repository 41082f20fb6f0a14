"""Patient identifiers are masked with typed placeholders; clinical numbers are left alone."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from medgo.data.pii import (
    DEFAULT_RECORD_NUMBER_PREFIXES,
    PII_TYPES,
    find_pii,
    is_valid_legacy_id,
    is_valid_resident_id,
    passes_luhn,
    scrub_pii,
    scrub_pii_values,
    scrub_preview,
)

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


# --------------------------------------------------------------------------------------------
# Validators
# --------------------------------------------------------------------------------------------
def test_validators_check_checksums_dates_and_provinces():
    assert is_valid_resident_id(VALID_ID) and is_valid_resident_id(ID_ENDING_IN_X.lower())
    assert not is_valid_resident_id(BAD_CHECKSUM_ID)
    assert is_valid_legacy_id("110105491231002")
    assert not is_valid_legacy_id("110105491331002")  # month 13
    assert not is_valid_legacy_id("990105491231002")  # no province 99
    assert is_valid_legacy_id("990105491231002", check_province=False)
    assert (
        passes_luhn(CARD)
        and passes_luhn(CARD_16)
        and not passes_luhn(CARD[:-1] + str((int(CARD[-1]) + 1) % 10))
    )


def masked(text: str) -> list[tuple[str, str]]:
    return [(text[s:e], k) for s, e, k in find_pii(text)]


# --------------------------------------------------------------------------------------------
# Resident IDs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "typed",
    [
        f"{VALID_ID[:6]} {VALID_ID[6:14]} {VALID_ID[14:]}",
        f"{VALID_ID[:6]}-{VALID_ID[6:14]}-{VALID_ID[14:]}",
        " ".join(VALID_ID[i : i + 4] for i in range(0, 18, 4)),
        ID_ENDING_IN_X.lower(),
    ],
)
def test_resident_ids_are_found_as_people_type_them(typed):
    assert masked(f"患者证件：{typed}，已核对") == [(typed, "ID")]


def test_legacy_15_digit_ids_need_a_real_birth_date():
    assert masked("身份证110105491231002。") == [("110105491231002", "ID")]
    assert masked("一代证 110105491231002 已换发") == [("110105491231002", "ID")]
    assert masked("样品110105491399002") == []  # 13th month: not a date, not an ID


# --------------------------------------------------------------------------------------------
# Phones
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "phone",
    [
        "138 1234 5678",
        "138-1234-5678",
        "+86 13812345678",
        "+8613812345678",
        "+86-138-1234-5678",
        "0086-13812345678",
        "(+86)13812345678",
        "01062345678",
        "057187654321",
        "(010)62345678",
        "（0571）8765 4321",
        "010 6234 5678",
        "0571-8765432",
        "010-62345678-8021",
        "010-62345678转8021",
        "+86-10-62345678",
    ],
)
def test_phone_numbers_in_every_common_format(phone):
    assert masked(f"有事请打{phone}，谢谢") == [(phone, "PHONE")]


def test_labelled_local_numbers_are_phones():
    assert masked("家属电话：62345678") == [("62345678", "PHONE")]


@pytest.mark.parametrize(
    "text",
    [
        "急救请拨打120，卫生热线12320，心理援助热线12356",
        "客服热线400-820-8820，服务电话800-810-8888，或4008208820",
        "医院总机：0571-87236114；预约挂号电话：010-69156114",
        "医院咨询热线010-82951332（24小时）",
        "如有不适请拨打科室电话0571-87236543，护士站电话：87236543",
    ],
)
def test_published_service_numbers_are_kept(text):
    assert masked(text) == []


def test_a_mobile_inside_a_longer_digit_run_is_not_a_phone():
    assert masked("交易流水2013812345678901号") == []


# --------------------------------------------------------------------------------------------
# Bank cards
# --------------------------------------------------------------------------------------------
def test_bank_cards_need_a_card_prefix_or_a_card_label():
    unprefixed = luhn_number("880000123456789")  # Luhn-valid, but no card scheme starts with 88
    assert masked(f"转账至{CARD}完成") == [(CARD, "BANK_CARD")]
    assert masked(f"编码{unprefixed}") == []
    assert masked(f"参考值{unprefixed}") == []
    assert masked(f"银行卡号：{unprefixed}") == [(unprefixed, "BANK_CARD")]


def test_a_card_label_masks_a_number_even_with_a_typo_in_the_check_digit():
    typo = CARD[:-1] + str((int(CARD[-1]) + 1) % 10)
    assert masked(f"卡号{typo}") == [(typo, "BANK_CARD")]


@pytest.mark.parametrize(
    "label", ["标本条码：", "条码", "标本号", "样本编号 ", "批号：", "订单号", "发票号码：", "流水号", "SN: "]
)
def test_a_luhn_valid_number_labelled_as_something_else_is_not_a_card(label):
    assert passes_luhn(CARD)
    assert masked(f"{label}{CARD}") == []


def test_a_spaced_card_is_one_card_not_a_phone_inside_it():
    card = luhn_number("622202138123456780")  # holds "13812345678" across its groups
    spaced = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    assert masked(f"退款账户 {spaced}") == [(spaced, "BANK_CARD")]


# --------------------------------------------------------------------------------------------
# Record and insurance numbers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "label",
    [
        "住院号码：",
        "登记号",
        "病理号 ",
        "影像号:",
        "ID号",
        "病案号码为",
        "门诊号码：",
        "检验号",
        "患者ID：",
        "医保卡号：",
        "社保卡号",
        "医疗保险号：",
        "参保号",
    ],
)
def test_record_and_insurance_numbers_after_their_labels(label):
    assert masked(f"{label}ZY-2023-0815，") == [("ZY-2023-0815", "MRN")]


def test_bed_and_specimen_numbers_are_not_patient_identifiers():
    assert masked("床号：12床，标本号：S20230815001") == []


def test_a_record_label_wins_over_the_shape_of_the_number():
    assert masked(f"住院号：{CARD}") == [(CARD, "MRN")]
    assert masked("病案号13812345678") == [("13812345678", "MRN")]
    assert masked(f"社保卡号：{VALID_ID}") == [(VALID_ID, "ID")]


def test_default_record_labels_can_be_extended_but_keep_their_name():
    assert "住院号" in DEFAULT_RECORD_NUMBER_PREFIXES and "床号" not in DEFAULT_RECORD_NUMBER_PREFIXES
    text = "流转号：A123456"
    assert masked(text) == []
    assert find_pii(text, record_number_prefixes=[*DEFAULT_RECORD_NUMBER_PREFIXES, "流转号"]) == [
        (4, 11, "MRN")
    ]


# --------------------------------------------------------------------------------------------
# E-mail
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "email",
    [
        "li.na88@hospital.com.cn",
        "wangfang＠163.com",
        "zhangwei[at]qq.com",
        "chen at pumch dot cn",
        "liuyang#126.com",
    ],
)
def test_email_addresses_including_full_width_and_spelled_out_at(email):
    assert masked(f"邮箱{email}联系") == [(email, "EMAIL")]


def test_a_hash_is_an_at_sign_only_before_a_domain():
    assert masked("3#床患者，C#语言") == []


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("王建国先生，您的报告已出", ["王建国"]),
        ("请李秀英女士到3诊室", ["李秀英"]),
        ("向张伟家属交代病情", ["张伟"]),
        ("刘芳的家属要求转院", ["刘芳"]),
        ("家属陈静签字同意手术", ["陈静"]),
        ("主治医师李明查房后指示继续治疗", ["李明"]),
        ("今日王主任查房", ["王"]),
        ("责任护士赵敏已执行医嘱", ["赵敏"]),
        ("医师：孙志强　记录者：周婷", ["孙志强", "周婷"]),
        ("签名：吴浩然", ["吴浩然"]),
        ("经治医生：郑海燕", ["郑海燕"]),
        ("张伟，男，45岁，因胸痛入院", ["张伟"]),
        ("黄晓燕（女，33岁）", ["黄晓燕"]),
        ("医生：你好，我是心内科的医生。\n患者：我叫马丽，今年52岁", ["马丽"]),
        ("杨帆：医生，我这个病要紧吗？", ["杨帆"]),
        ("我是王芳的女儿", ["王芳"]),
        ("徐磊你好，你的化验结果出来了", ["徐磊"]),
        ("患儿欧阳娜娜，女，6岁", ["欧阳娜娜"]),
        ("患者诸葛明，男，60岁", ["诸葛明"]),
        ("姓名：仉晓峰，性别：男", ["仉晓峰"]),
        ("患者亓军，男，40岁", ["亓军"]),
        ("姓名：买买提·艾力，男", ["买买提·艾力"]),
        ("患者王某，李某某陪同，张XX签字", ["王某", "李某某", "张XX"]),
        ("电话回访赵雪梅，患者诉症状好转", ["赵雪梅"]),
        ("家属：李华（女儿）", ["李华"]),
        ("医生：我姓林，是您的管床医生", ["林"]),
    ],
)
def test_names_in_the_shapes_clinical_text_uses(text, names):
    assert masked(text) == [(n, "NAME") for n in names]


@pytest.mark.parametrize(
    "text",
    [
        "患者石淋3年，予排石治疗",
        "口腔白斑，建议活检",
        "患者常咳，夜间加重",
        "患者高热，男，3岁",
        "患者黄疸，女，2岁",
        "予龙胆泻肝汤加减",
        "粪检见贾第鞭毛虫",
        "患者明显好转，时有咳嗽，于今日出院",
        "医生：马上给您安排检查，明天上午出结果",
        "护士应根据患者病情调整滴速",
        "向患者及家属交代病情",
        "孩子的班主任说他总是咳嗽",
        "未经过医生同意不要停药",
        "金银花：清热解毒。\n甘草：调和诸药。",
        "值班医生已到场，责任护士在旁协助",
        "文化程度：高中，男",
        "于某日入院，和某些药物同服",
        "行X线检查示双肺纹理增多",
    ],
)
def test_clinical_terms_and_everyday_words_are_not_names(text):
    assert masked(text) == []


# --------------------------------------------------------------------------------------------
# Hard negatives
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "医疗器械注册证编号：国械注准20153140496",
        "生产批号20230815，有效期至2026-08",
        "参照《中国2型糖尿病防治指南（2020年版）》及GB/T 16886.1-2011",
        "身高170cm，体重65kg，BMI 22.5kg/m2，每日尿量约2000ml",
        "2023-08-15 14:30 复查，2024年1月15日随访",
        "共纳入200例，男112例，女88例，年龄18-65岁",
        "订单号202308151430221234已支付",
    ],
)
def test_more_clinical_numbers_are_left_intact(text):
    assert masked(text) == []


def test_the_hospital_address_is_not_a_patient_address():
    assert masked("医院地址：杭州市上城区解放路88号") == []
    assert masked("住址：杭州市上城区解放路88号") == [("杭州市上城区解放路88号", "ADDRESS")]


def test_scrubbing_time_stays_linear_on_adversarial_input():
    # Long runs of the characters the patterns care about; quadratic backtracking would take minutes.
    hostile = "1-" * 3000 + "a@" * 5000 + "患者王" * 5000 + "：" * 5000 + "1 " * 3000
    assert isinstance(find_pii(hostile), list)


# --------------------------------------------------------------------------------------------
# The labelled evaluation set and its scorer (benchmarks/pii_eval.py)
# --------------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"medgo_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pii_eval():
    return _load_script(REPO / "benchmarks" / "pii_eval.py")


def _write_set(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


SCORER_SET = [
    {
        "id": "a",
        "text": "患者张伟，电话13812345678",
        "spans": [{"start": 2, "end": 4, "type": "NAME"}, {"start": 7, "end": 18, "type": "PHONE"}],
    },
    {"id": "b", "text": "手机+86 13912345678", "spans": [{"start": 2, "end": 17, "type": "PHONE"}]},
    {"id": "c", "text": "阿莫西林0.5g tid", "spans": []},
]


def test_scorer_gives_a_perfect_prediction_full_marks(pii_eval, tmp_path):
    examples = pii_eval.load_examples(_write_set(tmp_path / "set.jsonl", SCORER_SET))
    gold = {e.text: e.spans for e in examples}
    result = pii_eval.score(examples, lambda text: gold[text])
    figures = result.as_json()
    assert figures["precision"] == {"NAME": 1.0, "PHONE": 1.0} and figures["recall"] == {
        "NAME": 1.0,
        "PHONE": 1.0,
    }
    assert figures["support"] == {"NAME": 1, "PHONE": 2}
    assert (figures["hard_negatives"], figures["hard_negative_false_positives"]) == (1, 0)


def test_scorer_counts_misses_extras_boundary_slips_and_masked_negatives(pii_eval, tmp_path):
    examples = pii_eval.load_examples(_write_set(tmp_path / "set.jsonl", SCORER_SET))
    predictions = {
        "患者张伟，电话13812345678": [(7, 18, "PHONE")],  # the name is missed
        "手机+86 13912345678": [(6, 17, "PHONE")],  # "+86 " left out: an overlap, not an exact match
        "阿莫西林0.5g tid": [(4, 8, "PHONE")],  # a dosage masked
    }
    figures = pii_eval.score(examples, lambda text: predictions[text]).as_json()
    assert figures["recall"]["NAME"] == 0.0 and figures["precision"]["NAME"] == 1.0  # nothing predicted
    assert figures["recall"]["PHONE"] == 0.5 and figures["precision"]["PHONE"] == round(1 / 3, 4)
    assert figures["overlap_recall"]["PHONE"] == 1.0 and figures["overlap_precision"]["PHONE"] == round(
        2 / 3, 4
    )
    assert figures["hard_negative_false_positives"] == 1


def test_scorer_cli_prints_a_table_and_ends_with_one_json_line(pii_eval, tmp_path, capsys):
    data = _write_set(tmp_path / "set.jsonl", SCORER_SET)
    assert pii_eval.main(["--data", str(data), "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["recall"] == {"NAME": 1.0, "PHONE": 1.0} and figures["chars_per_s"] > 0
    assert any(line.startswith("PHONE") for line in lines[:-1])


def test_scorer_names_the_file_and_line_of_a_bad_record(pii_eval, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"text": "患者张伟", "spans": []}\n{"text": "短", "spans": [{"start": 0, "end": 9, "type": "NAME"}]}\n'
    )
    assert pii_eval.main(["--data", str(data)]) == 2
    assert f"error: {data}:2: spans[0]" in capsys.readouterr().err


def test_the_bundled_labelled_set_matches_its_generator_and_covers_every_type():
    generator = _load_script(REPO / "benchmarks" / "pii_data" / "make_pii_eval.py")
    assert generator.main(["--check"]) == 0
    for split in ("pii_dev.jsonl", "pii_test.jsonl"):
        counts = Counter()
        negatives = 0
        for line in (REPO / "benchmarks" / "pii_data" / split).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            negatives += not record["spans"]
            for span in record["spans"]:
                assert 0 <= span["start"] < span["end"] <= len(record["text"])
                counts[span["type"]] += 1
        assert min(counts[k] for k in ("NAME", "ID", "PHONE", "EMAIL", "BANK_CARD", "MRN")) >= 300, (
            split,
            counts,
        )
        assert negatives >= 500
