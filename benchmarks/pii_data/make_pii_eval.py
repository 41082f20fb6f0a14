"""Deterministic generator of medgo's labelled PII evaluation set (dev and test splits).

Every name, number and address here is invented. Each line written is
``{"id", "text", "spans": [{"start", "end", "type"}], "doc"}`` with character offsets
(``end`` exclusive); ``doc`` names the frame's document kind (``hard_negative`` for sentences
with nothing to mask). Types: NAME, ID, PHONE, EMAIL, BANK_CARD, MRN, ADDRESS, DOB.

The two splits share no sentence frame and no given name, and draw record labels, area codes,
phone prefixes, card prefixes, e-mail domains, uncommon surnames and hard-negative terms from
different pools, so a scrubber tuned on ``dev`` is measured on ``test`` in shapes it never saw.
Span conventions: a name is the name alone (no title or role word: ``<王建国>先生``,
``主治医师<李明>``), pseudonyms include their mask (``<王某某>``, ``<张XX>``); a surname alone is a
name only before an honorific or title (``<王>先生``, ``<李>主任``); a phone includes its ``+86``/
``0086`` prefix, the parentheses around an area code and an extension; numbers keep the spaces
or hyphens they were typed with; record and insurance numbers (type MRN) are the value after
their label. Published hotlines, 400/800 service numbers and hospital switchboards are not
masked (they identify no patient).

``python benchmarks/pii_data/make_pii_eval.py`` rewrites ``pii_dev.jsonl`` and ``pii_test.jsonl`` beside
it byte for byte; ``--check`` only verifies that the files on disk match.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


MIN_PER_TYPE = 320
HARD_NEGATIVES = 600

# ---------------------------------------------------------------------------------------------
# Pools. Common surnames are shared (every real text has them); everything else is split.
# ---------------------------------------------------------------------------------------------
COMMON_SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施"
)


@dataclass(frozen=True)
class Pools:
    surnames_extra: tuple[str, ...]
    compound: tuple[str, ...]
    given2: tuple[str, ...]
    given1: tuple[str, ...]
    id_areas: tuple[str, ...]
    mobile_prefixes: tuple[str, ...]
    area_codes: tuple[str, ...]
    email_domains: tuple[str, ...]
    pinyin: tuple[str, ...]
    card_prefixes: tuple[str, ...]
    record_labels: tuple[str, ...]
    insurance_labels: tuple[str, ...]
    cities: tuple[tuple[str, str], ...]
    roads: tuple[str, ...]
    clinical_terms: tuple[str, ...]
    barcode_labels: tuple[str, ...]


DEV = Pools(
    surnames_extra=tuple("文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚仉亓冼佘邝"),
    compound=words("欧阳 司马 诸葛 上官 东方 司徒"),
    given2=words(
        "建国 志强 秀英 桂兰 海燕 丽娟 晓明 文博 子涵 浩然 欣怡 梓轩 雨萱 思远 婉清 俊杰 嘉怡 宇航 明辉 "
        "春梅 国庆 玉兰 淑珍 建华 红梅 凤英 德明 振华 雅琴 晓燕 家豪 一鸣 诗琪 天佑 若曦 立新 卫东 秀兰 "
        "淑芬 晨曦 永红 小龙 佳怡 雪莲 俊峰 泽宇 梦瑶 金花 长江 树林"
    ),
    given1=tuple("伟芳娜敏静磊军洋勇艳杰涛明超霞平刚桂英华玉萍"),
    id_areas=words("110105 310104 440304 330106 510107 420111 370202 610113"),
    mobile_prefixes=words("130 131 132 133 135 136 137 138 139 150 151 152 158 159"),
    area_codes=words("010 021 0571 020 0755 025 0591"),
    email_domains=words("163.com qq.com 126.com hospital.com.cn pumch.cn outlook.com"),
    pinyin=words("zhangwei lina wangfang chenjing liuyang zhaolei huangmin zhouqiang wuhao sunli"),
    card_prefixes=words("622202 621700 622848 620522 436742 518710"),
    record_labels=words(
        "住院号 住院号码 病案号 门诊号 病历号 就诊号 登记号 病理号 影像号 ID号 检查号 就诊卡号"
    ),
    insurance_labels=("医保卡号", "社保卡号", "医保号"),
    cities=(
        ("北京市", "海淀区"),
        ("上海市", "徐汇区"),
        ("广州市", "天河区"),
        ("杭州市", "西湖区"),
        ("成都市", "武侯区"),
    ),
    roads=words("中关村大街 宛平南路 天河路 文三路 人民南路 解放路"),
    clinical_terms=words(
        "高热 黄疸 白斑 石淋 常咳 高血压 白细胞减少 黄体功能不足 金黄色葡萄球菌感染 毛细血管扩张 房颤 包块 "
        "宫颈糜烂 贾第鞭毛虫病 龙胆泻肝汤 柴胡疏肝散 夏枯草 杜仲 田七 牛黄解毒片 麻疹 康复训练 温病 "
        "强直性脊柱炎 罗红霉素 甘油三酯升高 谷丙转氨酶升高 苏醒 史密斯骨折 钟摆样运动 常规治疗 方案调整 "
        "安神补脑液 连翘败毒丸 孔源性视网膜脱离"
    ),
    barcode_labels=words("标本条码 条码号 标本号 批号 订单号 发票号码"),
)

TEST = Pools(
    surnames_extra=tuple(
        "邢骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄乜郦禚笪逄揭"
    ),
    compound=words("皇甫 慕容 令狐 夏侯 尉迟 公孙 端木 宇文"),
    given2=words(
        "振宇 佳琪 美玲 永强 建军 春燕 丽华 秋菊 子轩 梦琪 博文 昊天 紫涵 思彤 宏伟 秀珍 金凤 国华 建平 "
        "海涛 雪梅 慧敏 志刚 欣然 亚楠 晓东 素芬 学文 兰英 冬梅 伟民 少华 玉珍 德华 新民 桂芳 翠花 雨桐 "
        "依诺 锦程 宏图 子墨 诗涵 景行 安琪 美华 凤兰 光明 春生 秀云"
    ),
    given1=tuple("鹏辉丹莉斌宁琳颖红波婷雪鑫龙飞凯慧玲峰浩"),
    id_areas=words("120103 320102 350203 410105 430104 500103 230102 130102"),
    mobile_prefixes=words("166 170 173 176 177 180 181 183 185 186 187 188 189 191 198 199"),
    area_codes=words("022 023 028 0531 0371 0731 0898 0451 029"),
    email_domains=words("sina.com gmail.com 139.com foxmail.com yahoo.com.cn zju.edu.cn sohu.com"),
    pinyin=words("liming wangjun zhanghua chenyu yangxue xulei linfeng heyan guojie maxiao"),
    card_prefixes=words("622588 621483 622262 625900 456351 524090 622700"),
    record_labels=words(
        "病案号码 门诊号码 住院号 病理号 影像号 检验号 患者ID 登记号 档案号 放射号 病历号 住院号码"
    ),
    insurance_labels=words("医疗保险号 社保号 医保账号 参保号 医保卡号"),
    cities=(
        ("天津市", "南开区"),
        ("南京市", "鼓楼区"),
        ("武汉市", "洪山区"),
        ("长沙市", "岳麓区"),
        ("西安市", "雁塔区"),
    ),
    roads=words("卫津路 中山北路 珞喻路 麓山南路 长安南路 建设大道"),
    clinical_terms=words(
        "石膏固定 白带增多 黄连上清丸 高钾血症 常染色体显性遗传 龙骨 马兜铃酸肾病 毛囊炎 甘露醇 葛根汤 "
        "白术 何首乌 黄芪 苏合香丸 艾灸 谷氨酰胺 房间隔缺损 包虫病 宫外孕 管腔狭窄 温阳利水 安宫牛黄丸 "
        "向心性肥胖 明显好转 全血细胞减少 应激性溃疡 成骨不全 和胃降逆 时有心悸 高龄 黄染 白内障 石棉肺 "
        "金刚烷胺 秦艽 桂枝茯苓丸"
    ),
    barcode_labels=words("样本条码 条码 检验条码 批号 生产批号 流水号 交易单号 发票号"),
)

SEX = ("男", "女")
DEPTS = words("心内科 呼吸内科 消化内科 内分泌科 神经内科 普外科 骨科 妇产科 儿科 肾内科")
HOSPITALS = words("市第一人民医院 省人民医院 市中心医院 县人民医院 医科大学附属第二医院 市中医院")
SYMPTOMS = words("胸闷 头晕 咳嗽、咳痰 腹痛 发热 乏力 心悸 腰痛 多饮多尿 气促 恶心呕吐")
DURATIONS = words("3天 1周 2个月 半年 10余年 5小时 2天")
DIAGNOSES = words(
    "社区获得性肺炎 2型糖尿病 原发性高血压 冠状动脉粥样硬化性心脏病 慢性胃炎 急性阑尾炎 腰椎间盘突出症 "
    "缺铁性贫血 慢性阻塞性肺疾病 脑梗死"
)
DRUGS = (
    "阿莫西林胶囊0.5g tid",
    "盐酸二甲双胍片0.5g bid",
    "阿司匹林肠溶片100mg qd",
    "氨氯地平5mg qd",
    "头孢呋辛1.5g ivgtt q12h",
    "奥美拉唑20mg qd",
    "胰岛素8U皮下注射",
    "硝苯地平控释片30mg qd",
)
RELATIVES = words("妻子 丈夫 儿子 女儿 母亲 父亲 爱人")
LABS = (
    "白细胞12.5×10^9/L",
    "血红蛋白98g/L",
    "空腹血糖9.6mmol/L",
    "糖化血红蛋白8.1%",
    "肌酐132μmol/L",
    "血小板210×10^9/L",
    "C反应蛋白56mg/L",
    "尿蛋白（++）",
    "BNP 1350pg/ml",
    "钾3.2mmol/L",
)
ICD = words("I10 E11.9 J18.9 K29.5 N18.3 I63.9 C34.1 M51.2 J44.1 K35.8")


# ---------------------------------------------------------------------------------------------
# Values. Each returns (text, [(relative_start, relative_end, type)]).
# ---------------------------------------------------------------------------------------------
Piece = tuple[str, list[tuple[int, int, str]]]


def _check_char(first17: str) -> str:
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    remainder = (12 - sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11) % 11
    return "X" if remainder == 10 else str(remainder)


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        digits = [int(c) for c in reversed(body + check)]
        if (sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])) % 10 == 0:
            return body + check
    raise AssertionError("unreachable")


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


class Values:
    """Random identifiers and fillers from one split's pools."""

    def __init__(self, pools: Pools, rng: random.Random) -> None:
        self.p, self.rng = pools, rng
        self.surnames = COMMON_SURNAMES * 3 + list(pools.surnames_extra)

    def choice(self, seq):
        return self.rng.choice(seq)

    # names
    def surname(self) -> str:
        r = self.rng.random()
        if r < 0.07:
            return self.choice(self.p.compound)
        return self.choice(self.surnames)

    def full_name(self) -> str:
        given = self.choice(self.p.given1) if self.rng.random() < 0.3 else self.choice(self.p.given2)
        return self.surname() + given

    def pseudonym(self) -> str:
        return self.surname() + self.choice(("某", "某某", "某某", "XX", "××", "**", "某"))

    # numbers
    def birth(self) -> tuple[int, int, int]:
        return self.rng.randint(1930, 2019), self.rng.randint(1, 12), self.rng.randint(1, 28)

    def resident_id(self) -> str:
        y, m, d = self.birth()
        body = f"{self.choice(self.p.id_areas)}{y:04d}{m:02d}{d:02d}{_digits(self.rng, 3)}"
        number = body + _check_char(body)
        style = self.rng.random()
        if number.endswith("X") and style < 0.3:
            number = number[:-1] + "x"
        if style > 0.85:
            sep = self.choice((" ", "-"))
            number = sep.join((number[:6], number[6:14], number[14:]))
        return number

    def legacy_id(self) -> str:
        y, m, d = self.birth()
        y = self.rng.randint(1930, 1984)
        return f"{self.choice(self.p.id_areas)}{y % 100:02d}{m:02d}{d:02d}{_digits(self.rng, 3)}"

    def mobile(self) -> str:
        number = self.choice(self.p.mobile_prefixes) + _digits(self.rng, 8)
        style = self.rng.randrange(9)
        if style == 1:
            return f"{number[:3]} {number[3:7]} {number[7:]}"
        if style == 2:
            return f"{number[:3]}-{number[3:7]}-{number[7:]}"
        if style == 3:
            return "+86 " + number
        if style == 4:
            return "+86" + number
        if style == 5:
            return "0086-" + number
        if style == 6:
            return f"+86-{number[:3]}-{number[3:7]}-{number[7:]}"
        return number

    def landline(self) -> str:
        area = self.choice(self.p.area_codes)
        local_len = 8 if len(area) == 3 or self.rng.random() < 0.6 else 7
        local = self.choice("23456789") + _digits(self.rng, local_len - 1)
        style = self.rng.randrange(7)
        if style == 0:
            text = f"{area}{local}"
        elif style == 1:
            text = f"({area}){local}"
        elif style == 2:
            text = f"（{area}）{local}"
        elif style == 3:
            text = f"{area} {local[:4]} {local[4:]}"
        else:
            text = f"{area}-{local}"
        ext = self.rng.random()
        if ext < 0.12:
            text += "-" + _digits(self.rng, 4)
        elif ext < 0.2:
            text += "转" + self.choice("123456789") + _digits(self.rng, 3)
        return text

    def international_landline(self) -> str:
        area = self.choice(self.p.area_codes)[1:]
        return f"+86-{area}-{self.choice('2345678')}{_digits(self.rng, 7 if len(area) == 2 else 6)}"

    def minority_name(self) -> str:
        return (
            self.choice(("买买提", "阿不都", "热合曼", "古丽", "阿依古丽", "努尔"))
            + "·"
            + self.choice(("艾力", "吐尔逊", "阿布拉", "买合木提", "热依拉"))
        )

    def phone(self) -> str:
        return self.mobile() if self.rng.random() < 0.65 else self.landline()

    def email(self) -> str:
        local = self.choice(self.p.pinyin)
        r = self.rng.random()
        if r < 0.3:
            local += str(self.rng.randint(1, 2020))
        elif r < 0.45:
            local = local[:3] + self.choice("._") + local[3:]
        domain = self.choice(self.p.email_domains)
        at = self.choice(("@", "@", "@", "@", "@", "＠"))
        return f"{local}{at}{domain}"

    def bank_card(self) -> str:
        length = self.choice((16, 19, 19))
        number = _luhn_complete(self.choice(self.p.card_prefixes) + _digits(self.rng, length - 7))
        if self.rng.random() < 0.25:
            return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        return number

    def record_number(self) -> str:
        style = self.rng.randrange(7)
        if style == 0:
            return _digits(self.rng, self.rng.randint(6, 10))
        if style == 1:
            return self.choice(("ZY", "MZ", "BA", "P", "IP", "OP", "ZYH", "CT", "MR")) + _digits(self.rng, 8)
        if style == 2:
            return f"{self.rng.randint(2015, 2024)}-{_digits(self.rng, 6)}"
        if style == 3:
            return (
                self.choice(("ZY", "BL", "F", "DR"))
                + "-"
                + f"{self.rng.randint(2015, 2024)}"
                + _digits(self.rng, 5)
            )
        if style == 4:
            return "00" + _digits(self.rng, 6)
        return str(self.rng.randint(100000, 9999999))

    def insurance_number(self) -> str:
        style = self.rng.randrange(3)
        if style == 0:
            return self.choice("ABCDEFGHJK") + _digits(self.rng, 8)
        if style == 1:
            return _digits(self.rng, 10)
        return _digits(self.rng, 4) + _digits(self.rng, 8)

    def address(self) -> str:
        city, district = self.choice(self.p.cities)
        return f"{city}{district}{self.choice(self.p.roads)}{self.rng.randint(1, 399)}号" + (
            f"{self.rng.randint(1, 30)}栋{self.rng.randint(101, 2405)}室" if self.rng.random() < 0.5 else ""
        )

    def dob(self) -> str:
        y, m, d = self.birth()
        return self.choice((f"{y}-{m:02d}-{d:02d}", f"{y}年{m}月{d}日", f"{y}/{m:02d}/{d:02d}"))

    def date(self) -> str:
        y, m, d = self.rng.randint(2018, 2025), self.rng.randint(1, 12), self.rng.randint(1, 28)
        return self.choice((f"{y}-{m:02d}-{d:02d}", f"{y}年{m}月{d}日"))

    # hard-negative numbers
    def barcode(self) -> str:
        return _luhn_complete(
            self.choice(("62", "4", "5", "8", "1")) + _digits(self.rng, self.rng.randint(14, 17))
        )

    def approval(self) -> str:
        return "国药准字" + self.choice("HZSJB") + str(self.rng.randint(10, 20)) + _digits(self.rng, 6)

    def device_registration(self) -> str:
        return (
            self.choice(("国械注准", "国械注进", "浙械注准", "粤械注准"))
            + str(self.rng.randint(2014, 2024))
            + _digits(self.rng, 7)
        )

    def hotline(self) -> str:
        return self.choice(
            (
                "120",
                "12320",
                "12356",
                "110",
                "119",
                "12345",
                f"400-{_digits(self.rng, 3)}-{_digits(self.rng, 4)}",
                f"800-{_digits(self.rng, 3)}-{_digits(self.rng, 4)}",
                f"400{_digits(self.rng, 7)}",
                f"95{_digits(self.rng, 3)}",
            )
        )

    def switchboard(self) -> str:
        area = self.choice(self.p.area_codes)
        return f"{area}-{self.choice('2345678')}{_digits(self.rng, 7 if len(area) == 3 else 6)}"


# ---------------------------------------------------------------------------------------------
# Frames. ``{SLOT}`` is filled by the slot's generator; see SLOTS below.
# ---------------------------------------------------------------------------------------------
DEV_FRAMES: dict[str, tuple[str, ...]] = {
    "admission": (
        "入院记录\n姓名：{N}　性别：{SEX}　年龄：{AGE}岁　{REC}\n主诉：{SYM}{DUR}。",
        "患者{N}，{SEX}，{AGE}岁，因“{SYM}{DUR}”于{DATE}入院。",
        "{N}，{SEX}，{AGE}岁，{DEPT}门诊就诊，诉{SYM}{DUR}。",
        "患者{NP}，{SEX}性，{AGE}岁，{REC}，身份证号：{ID}。",
        "患者{N}，{SEX}，{AGE}岁。身份证号码{ID}，联系电话：{MOB}（本人），家属电话：{PH}。",
        "家庭住址：{ADDR}，出生日期：{DOB}，身份证：{ID15}（一代证）。",
        "入院时间：{DATE}　{REC}　床号：12床\n患者{N}入院后完善相关检查，{LAB}。",
    ),
    "discharge": (
        "出院小结\n患者姓名：{N}　{REC}　入院日期：{DATE}　出院日期：{DATE}\n出院诊断：{DIAG}（{ICD}）。",
        "出院医嘱：{DRUG}，定期复查。如有不适请联系{N}医生，手机{MOB}。",
        "主治医师：{N}　记录者：{N}　{DATE}",
        "患者{N}住院期间予{DRUG}治疗，病情好转出院，{REC}。",
        "出院带药：{DRUG}。医保卡号：{INS_V}，结算银行卡号{CARD}。",
    ),
    "progress": (
        "今日{NS}主任查房，指示：继续{DRUG}，复查{LAB}。",
        "{N}主治医师查房后指出：患者{SYM}较前好转。",
        "经治医生：{N}；上级医师：{N}。",
        "会诊记录：应{DEPT}邀请，{NS}副主任医师会诊患者{N}，建议加用{DRUG}。",
    ),
    "dialogue": (
        "医生：您好，请问您是{N}吗？\n患者：对，我是{N}。",
        "患者：医生您好，我叫{N}，今年{AGE}岁，{SYM}{DUR}了。",
        "{N}：医生，我这个{SYM}要紧吗？\n医生：{NS}先生，您别担心，先做个检查。",
        "{N}你好，你的检查结果出来了，{LAB}。",
        "家属：我是{N}的{REL}，我电话是{MOB}，有情况随时联系我。",
        "医生：{N}女士，您的报告已发到{EM}，请查收。",
        "患者：我邮箱是{EM}，麻烦把化验单发我一下，手机号{MOB}。",
    ),
    "followup": (
        "{NS}阿姨您好，我是{HOSP}{DEPT}的随访护士{N}，想了解一下您出院后的情况。",
        "随访记录：{DATE}电话随访患者{N}（{MOB}），患者诉{SYM}减轻。",
        "随访人：{N}　随访方式：电话（{PH}）　{REC}",
        "电话随访：{NS}先生本人接听，{LAB}，嘱继续{DRUG}。",
    ),
    "consent": (
        "向{N}家属交代病情及手术风险，家属表示理解并签字。",
        "{N}的家属要求转院，已告知相关风险。",
        "家属{N}签字同意手术。",
        "知情同意书\n患者：{N}　身份证号：{ID}\n授权委托人：{N}（{REL}），联系电话：{PH}",
        "患者签名：{N}　{REL}签名：{N}　谈话医师：{N}　{DATE}",
    ),
    "referral": (
        "转诊单\n致{HOSP}{DEPT}{NS}主任：\n现有患者{N}，{SEX}，{AGE}岁，{REC}，因{DIAG}转诊贵院。",
        "转出医院联系人：{N}，电话{TEL}，邮箱{EM}。",
    ),
    "report": (
        "检验报告单\n姓名：{N}　性别：{SEX}　年龄：{AGE}　{REC}\n{LAB}\n送检医师：{N}",
        "影像报告\n{REC}　患者：{N}\n印象：右下肺斑片影。\n报告医师：{N}　审核医师：{N}",
        "病理报告 {REC} 患者{NP} 住院号：{MRN_V}\n诊断：（胃窦）慢性浅表性胃炎。",
    ),
    "nursing": (
        "护理记录：{TIME}患者{N}诉{SYM}，遵医嘱予{DRUG}，责任护士{N}。",
        "{TIME} 巡视病房，患者{NP}安静入睡，生命体征平稳。护士：{N}",
    ),
    "billing": (
        "请将退费转入本人银行卡，卡号{CARD}，户名{N}。",
        "退款申请：{N}，身份证{ID}，银行账号{CARD}，手机{MOB}。",
        "{INS}，{INS}，自付部分已从尾号{D4}的账户扣除。",
        "收款人：{N}　开户行：工商银行　账号：{CARD}",
    ),
    "mixed": (
        "{N}患者今日出院，嘱定期复查{LAB}。",
        "尊敬的{N}先生：您好！您的体检报告已生成，{LAB}。",
        "{N}老师您好，您母亲的检查结果已出。",
        "医生：我姓{NS}，是您的管床医生，有事可以找我。",
        "家属（{N}，{REL}）已签字确认。",
        "由其{REL}{N}陪同来院，{REL}联系电话{MOB}。",
        "今日由{N}主任医师主刀行腹腔镜胆囊切除术。",
        "病人{N}今晨体温38.5℃，予物理降温。",
        "患者（{N}）要求提前出院，已告知风险。",
        "医生：您好，{N}。请坐，哪里不舒服？",
        "护士：{NS}阿姨，该量血压了。",
        "收件人：{N}，电话：{PH}，地址：{ADDR}",
        "{N}（主治医师）已与家属沟通。",
        "姓名 {N} 性别 {SEX} 年龄 {AGE}岁 {REC}",
        "病人{NP}，{AGE}岁，{DIAG}。",
        "今日致电{N}，告知复查结果：{LAB}。",
        "已通知{N}明日空腹抽血，并提醒{N}携带医保卡。",
        "随访对象：{N}（{REL}代接），{LAB}。",
        "姓名：{UYG}　{REC}　民族：维吾尔族",
        "联系电话：{INTL}，邮箱{EM}。",
    ),
    "outpatient": (
        "门诊病历 {DATE} {DEPT}\n{N}　{SEX}　{AGE}岁　{REC}\n主诉：{SYM}{DUR}。",
        "预约成功：{N}，{DATE} 上午，{DEPT}，{REC}。",
        "{N}先生，{AGE}岁，复诊，{LAB}，{DRUG}。",
    ),
}

TEST_FRAMES: dict[str, tuple[str, ...]] = {
    "admission": (
        "姓 名：{N}  性 别：{SEX}  民 族：汉  {REC}\n现病史：{SYM}{DUR}，加重1天。",
        "病人{N}（{SEX}，{AGE}岁）以“{SYM}{DUR}”为主诉收入我科。",
        "{N} {SEX} {AGE}岁 因{DIAG}入院，身份证{ID}",
        "患者{N}自诉{SYM}{DUR}，既往{DIAG}病史，{LAB}。",
        "入院情况：{NP}，{AGE}岁{SEX}性，{REC}，联系人：{N}（{REL}），电话：{PH}。",
        "证件号码：{ID}　出生年月：{DOB}　户籍地址：{ADDR}",
        "身份证号：{ID15}，{REC}，{N}，{SEX}。",
    ),
    "discharge": (
        "出院记录：{N}，{SEX}，{AGE}岁，于{DATE}出院。出院诊断：1.{DIAG}；2.{DIAG}。",
        "经治医师：{N}　主任医师：{N}　书写日期：{DATE}",
        "出院后如有疑问，可致电{DEPT}{N}护士（{TEL}）。",
        "{REC}　{N}　{SEX}　出院带药：{DRUG}，参保人医保编号{INS_V}。",
        "住院费用已结算，余款退回{N}名下银行卡{CARD}。",
    ),
    "progress": (
        "{DATE} {NS}副主任医师查房记录：患者{SYM}明显缓解，继续{DRUG}。",
        "今日查房，主治医师{N}指示完善{LAB}复查。",
        "上级医师{N}查看患者后认为诊断明确。",
        "记录医师：{N}（签名）",
    ),
    "dialogue": (
        "【患者】大夫好，我是{N}，上周在您这看过{SYM}。\n【医生】{NS}女士好，最近怎么样？",
        "医生：你叫什么名字？\n患者：{N}。\n医生：{N}，你哪里不舒服？",
        "{N}您好，我是{DEPT}的{N}，您的化验结果{LAB}。",
        "患者家属：我爸爸叫{N}，今年{AGE}岁了，这两天{SYM}。",
        "我的手机是{MOB}，邮箱{EM}，麻烦医生把报告发给我。",
        "{N}：大夫，这个药一天吃几次？\n{N}：一天两次，饭后吃。",
        "好的{NS}大爷，您留个电话吧。——{MOB}。",
    ),
    "followup": (
        "出院后第7天电话回访{N}，本人述{SYM}已缓解，电话{MOB}。",
        "随访医生：{N}　随访对象：{N}　联系方式：{PH}",
        "{DATE}随访：{NS}女士未接听，改发邮件至{EM}。",
        "随访护士{N}于{DATE}致电患者家属{N}，告知复诊时间。",
    ),
    "consent": (
        "手术知情同意书：患者{N}，{REC}。医生已向{N}及其家属详细说明手术风险。",
        "以上内容我已知晓，同意手术。患者（签字）：{N}　日期：{DATE}",
        "签字人：{N}　与患者关系：{REL}　身份证号：{ID}",
        "经与{N}的家属沟通，家属拒绝进一步检查，签字为证。",
        "授权委托书：本人{N}（身份证号码{ID}）委托{N}代为签署医疗文书。",
    ),
    "referral": (
        "转诊介绍信\n{HOSP}{DEPT}：\n兹介绍{N}同志前来就诊，{REC}，请予接诊。\n转诊医生：{N}",
        "双向转诊单：{N}，{SEX}，{AGE}岁，诊断{DIAG}，转入{HOSP}，联系电话{TEL}。",
    ),
    "report": (
        "CT检查报告\n{REC}　姓名：{N}　性别：{SEX}\n检查所见：{DIAG}改变。\n诊断医师：{N}",
        "{REC}；送检科室：{DEPT}；送检医生：{N}；检验者：{N}；审核者：{N}",
        "超声报告：受检者{N}，{SEX}，{AGE}岁。{LAB}。操作者：{N}",
    ),
    "nursing": (
        "{TIME} 患者{N}主诉{SYM}，已报告值班医生，记录人：{N}",
        "交班记录：{N}床旁交接，{LAB}。接班护士：{N}",
    ),
    "billing": (
        "开户名：{N}，银行卡号：{CARD}，联系手机：{MOB}",
        "医保结算：{INS}，个人支付部分由{CARD}扣款。",
        "退费请汇至 {CARD}（{N}），如有疑问请邮件{EM}。",
    ),
    "outpatient": (
        "门诊号码：{MRN_V}　姓名：{N}　年龄：{AGE}岁\n诊断：{DIAG}",
        "{N}女士今日复诊，{LAB}，{DRUG}，{REC}。",
        "挂号信息：{N}，{DEPT}，{DATE}，手机{MOB}，{INS}。",
    ),
}

DEV_NEGATIVE_FRAMES: tuple[str, ...] = (
    "{DRUG}，一日3次，每次500mg，静滴250ml，疗程7天。",
    "化验：{LAB}，{LAB}，{LAB}。",
    "诊断：{ICD} {DIAG}；{ICD}。",
    "批准文号：{APPROVAL}，{APPROVAL}。",
    "{BARCODE_L}：{BARCODE}，采集时间{DATE} 08:30。",
    "{DATE} 14:30入院，{DATE}复查，随访至2025年。",
    "血压150/95mmHg，心率88次/分，体温38.5℃，SpO2 96%，身高170cm，体重65kg。",
    "患者{TERM}，{SEX}，{AGE}岁。",
    "患者{TERM}{DUR}，予{DRUG}治疗。",
    "患者于今日入院，既往{DIAG}病史10年。",
    "主诉：{SYM}{DUR}。现病史：患者{DUR}前无明显诱因出现{SYM}。",
    "中医诊断：{TERM}。治法：清热利湿。",
    "如有紧急情况请拨打急救电话{HOTLINE}，或拨打医院总机{SWITCH}。",
    "心理援助热线：{HOTLINE}；卫生健康热线12320。",
    "医疗器械注册证编号：{DEVREG}，{BARCODE_L}{BARCODE}。",
    "参照《中国2型糖尿病防治指南（2020年版）》及GB/T 16886.1-2011。",
    "家属要求复印病历；父亲有糖尿病史，母亲体健。",
    "患者家属：医生您好，孩子两岁半，昨晚开始发烧。",
    "医生：好的，明天上午来复查{LAB}。",
    "查体：T 36.8℃，P 80次/分，R 18次/分，BP 120/80mmHg。{TERM}。",
    "共计住院{AGE}天，费用12345.67元。",
    "{TERM}患者应注意休息，遵医嘱用药。",
    "医生：马上给您安排检查，明天上午出结果。",
    "护士：方便的话请家属过来一下。",
    "患者：于是我就去了社区医院，医生说是{TERM}。",
    "患者诉高热伴寒战，家属诉其精神差。",
    "我是江苏人，来这边打工，最近{SYM}。",
    "孩子的班主任说他上课总是咳嗽。",
    "未经过医生同意，不要自行停药。",
    "向患者及家属交代病情，家属表示理解。",
    "患者常规行血常规、尿常规检查，{LAB}。",
    "护士应根据患者病情调整输液速度。",
    "家属明白手术风险，同意手术。",
    "患者安全管理：防跌倒、防坠床。",
    "金银花：清热解毒，疏散风热。\n连翘：清热解毒，消肿散结。",
    "甘草：补脾益气，调和诸药。",
    "主任医师查房：同意目前诊断。",
    "值班医生已到场，责任护士在旁协助。",
    "社区医生随访，全科医生建议复查。",
    "家属：好的，谢谢医生。",
    "文化程度：高中，职业：工人。",
    "患者明显好转，时有咳嗽，于今日出院。",
    "联系方式见病历首页，随访时间为出院后1个月。",
    "白天嗜睡，夜间烦躁，考虑{TERM}。",
)

TEST_NEGATIVE_FRAMES: tuple[str, ...] = (
    "用法用量：{DRUG}；儿童按体重10mg/kg计算，最大剂量不超过2g/d。",
    "实验室检查示{LAB}、{LAB}，余未见异常。",
    "ICD-10编码：{ICD}，{ICD}；手术编码：47.0901。",
    "药品信息：{APPROVAL}，生产批号{BATCH}，有效期至2026-08。",
    "{BARCODE_L}{BARCODE}　标本类型：静脉血　接收时间：{DATE} 10:15",
    "复诊时间：{DATE} 9:00-11:30，第3诊室。",
    "体重指数26.4kg/m2，腰围92cm，每日饮水1500ml，尿量约2000ml/24h。",
    "患者{TERM}，{AGE}岁，{SEX}性。",
    "病人{TERM}{DUR}，遂来我院就诊。",
    "患者{DUR}前出现{SYM}，于{DATE}来院。",
    "考虑{TERM}，建议{DRUG}。",
    "处方：{TERM}颗粒，每次1袋，每日2次。",
    "咨询热线：{HOTLINE}（工作日8:00-17:00）；医院总台：{SWITCH}",
    "全国统一急救电话{HOTLINE}，服务热线{HOTLINE}。",
    "{DEVREG}；{BARCODE_L}：{BARCODE}",
    "依据《慢性阻塞性肺疾病诊治指南（2021年修订版）》，{ICD}。",
    "家属诉患者近{DUR}食欲下降，精神差。",
    "医生：您先别着急，这个{TERM}不严重。",
    "护士：好的，马上给您换药。",
    "患者：明天还要空腹抽血吗？",
    "{TERM}：多见于老年人，应定期复查。",
    "订单号{ORDER}已支付，金额368.00元。",
)


# ---------------------------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------------------------
def slot_generators(v: Values) -> dict[str, Callable[[], Piece]]:
    def span(kind: str, make: Callable[[], str]) -> Callable[[], Piece]:
        def piece() -> Piece:
            text = make()
            return text, [(0, len(text), kind)]

        return piece

    def labelled(labels: tuple[str, ...], make: Callable[[], str]) -> Callable[[], Piece]:
        def piece() -> Piece:
            label = v.choice(labels) + v.choice(("：", "：", ":", "", " ", "为"))
            value = make()
            return label + value, [(len(label), len(label) + len(value), "MRN")]

        return piece

    def plain(make: Callable[[], str]) -> Callable[[], Piece]:
        return lambda: (make(), [])

    def any_name() -> str:
        return v.pseudonym() if v.rng.random() < 0.2 else v.full_name()

    return {
        "N": span("NAME", any_name),
        "NS": span("NAME", v.surname),
        "NP": span("NAME", v.pseudonym),
        "ID": span("ID", v.resident_id),
        "ID15": span("ID", v.legacy_id),
        "MOB": span("PHONE", v.mobile),
        "TEL": span("PHONE", v.landline),
        "INTL": span("PHONE", v.international_landline),
        "UYG": span("NAME", v.minority_name),
        "PH": span("PHONE", v.phone),
        "EM": span("EMAIL", v.email),
        "CARD": span("BANK_CARD", v.bank_card),
        "MRN_V": span("MRN", v.record_number),
        "INS_V": span("MRN", v.insurance_number),
        "REC": labelled(v.p.record_labels, v.record_number),
        "INS": labelled(v.p.insurance_labels, v.insurance_number),
        "ADDR": span("ADDRESS", v.address),
        "DOB": span("DOB", v.dob),
        "SEX": plain(lambda: v.choice(SEX)),
        "AGE": plain(lambda: str(v.rng.randint(1, 95))),
        "DATE": plain(v.date),
        "TIME": plain(lambda: f"{v.rng.randint(0, 23):02d}:{v.rng.randint(0, 59):02d}"),
        "D4": plain(lambda: _digits(v.rng, 4)),
        "DIAG": plain(lambda: v.choice(DIAGNOSES)),
        "SYM": plain(lambda: v.choice(SYMPTOMS)),
        "DUR": plain(lambda: v.choice(DURATIONS)),
        "DRUG": plain(lambda: v.choice(DRUGS)),
        "DEPT": plain(lambda: v.choice(DEPTS)),
        "HOSP": plain(lambda: v.choice(HOSPITALS)),
        "REL": plain(lambda: v.choice(RELATIVES)),
        "LAB": plain(lambda: v.choice(LABS)),
        "ICD": plain(lambda: v.choice(ICD)),
        "TERM": plain(lambda: v.choice(v.p.clinical_terms)),
        "APPROVAL": plain(v.approval),
        "BATCH": plain(lambda: v.choice(("B", "", "L")) + _digits(v.rng, 8)),
        "BARCODE": plain(v.barcode),
        "BARCODE_L": plain(lambda: v.choice(v.p.barcode_labels)),
        "DEVREG": plain(v.device_registration),
        "HOTLINE": plain(v.hotline),
        "SWITCH": plain(v.switchboard),
        "ORDER": plain(lambda: _digits(v.rng, 18)),
    }


_SLOT = re.compile(r"\{([A-Z0-9_]+)\}")


def render(frame: str, slots: dict[str, Callable[[], Piece]]) -> tuple[str, list[dict]]:
    out: list[str] = []
    spans: list[dict] = []
    cursor = length = 0
    for match in _SLOT.finditer(frame):
        literal = frame[cursor : match.start()]
        out.append(literal)
        length += len(literal)
        text, inner = slots[match.group(1)]()
        spans.extend({"start": length + s, "end": length + e, "type": k} for s, e, k in inner)
        out.append(text)
        length += len(text)
        cursor = match.end()
    out.append(frame[cursor:])
    return "".join(out), spans


def build_split(
    name: str, pools: Pools, frames: dict[str, tuple[str, ...]], negatives: tuple[str, ...], seed: int
):
    rng = random.Random(seed)
    slots = slot_generators(Values(pools, rng))
    flat = [(doc, frame) for doc, group in frames.items() for frame in group]
    records = []
    counts: Counter = Counter()
    wanted = words("NAME ID PHONE EMAIL BANK_CARD MRN")
    i = 0
    while any(counts[k] < MIN_PER_TYPE for k in wanted):
        short = [k for k in wanted if counts[k] < MIN_PER_TYPE]
        doc, frame = flat[i % len(flat)]
        i += 1
        if not any(_frame_has(frame, k) for k in short):
            continue
        text, spans = render(frame, slots)
        counts.update(s["type"] for s in spans)
        records.append({"id": f"{name}-{len(records):05d}", "text": text, "spans": spans, "doc": doc})
    for j in range(HARD_NEGATIVES):
        text, spans = render(negatives[j % len(negatives)], slots)
        assert not spans
        records.append(
            {"id": f"{name}-{len(records):05d}", "text": text, "spans": [], "doc": "hard_negative"}
        )
    rng.shuffle(records)
    return records


_FRAME_TYPES = {
    "NAME": ("{N}", "{NS}", "{NP}"),
    "ID": ("{ID}", "{ID15}"),
    "PHONE": ("{MOB}", "{TEL}", "{PH}"),
    "EMAIL": ("{EM}",),
    "BANK_CARD": ("{CARD}",),
    "MRN": ("{REC}", "{INS}", "{MRN_V}", "{INS_V}"),
}


def _frame_has(frame: str, kind: str) -> bool:
    return any(slot in frame for slot in _FRAME_TYPES[kind])


def dump(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="verify the files on disk instead of writing them"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE, help="folder to write pii_dev.jsonl and pii_test.jsonl into"
    )
    args = parser.parse_args(argv)
    splits = {
        "pii_dev.jsonl": build_split("dev", DEV, DEV_FRAMES, DEV_NEGATIVE_FRAMES, seed=20240601),
        "pii_test.jsonl": build_split("test", TEST, TEST_FRAMES, TEST_NEGATIVE_FRAMES, seed=20240917),
    }
    status = 0
    for filename, records in splits.items():
        content = dump(records)
        path = args.out / filename
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                print(f"{path}: differs from the generator", file=sys.stderr)
                status = 1
            continue
        path.write_text(content, encoding="utf-8")
        kinds = Counter(s["type"] for r in records for s in r["spans"])
        print(f"{path}: {len(records)} examples, {dict(sorted(kinds.items()))}")
    return status


if __name__ == "__main__":
    sys.exit(main())
