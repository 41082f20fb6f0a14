"""Authored sample items for the CBLUE tasks beyond CMeEE / CHIP-STS / KUAKE-QIC.

Hand-written for this repository (no text is taken from the CBLUE releases); each file mimics
its task's published layout. Spans, BIO tags and label sets are computed and asserted here so
the files are internally consistent. Imported by make_samples.py, which writes and checks them.
"""
from __future__ import annotations

import json

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _find(text: str, mention: str, occurrence: int = 0) -> int:
    start = -1
    for _ in range(occurrence + 1):
        start = text.find(mention, start + 1)
        if start < 0:
            raise AssertionError(f"{mention!r} not in {text!r}")
    return start


def _jsonl(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# ---------------------------------------------------------------------------
# CMeIE (JSON lines under a .json name, as CBLUE ships it)
# ---------------------------------------------------------------------------
# (text, [(subject, subject_type, predicate, object, object_type)])
CMEIE = [
    ("慢性阻塞性肺疾病@长期吸烟是慢性阻塞性肺疾病最重要的危险因素，患者常表现为慢性咳嗽、咳痰和活动后气促。",
     [("慢性阻塞性肺疾病", "疾病", "高危因素", "长期吸烟", "社会学"),
      ("慢性阻塞性肺疾病", "疾病", "临床表现", "慢性咳嗽", "症状"),
      ("慢性阻塞性肺疾病", "疾病", "临床表现", "咳痰", "症状"),
      ("慢性阻塞性肺疾病", "疾病", "临床表现", "活动后气促", "症状")]),
    ("缺铁性贫血@缺铁性贫血可口服硫酸亚铁治疗，血清铁蛋白检测有助于明确诊断。",
     [("缺铁性贫血", "疾病", "药物治疗", "硫酸亚铁", "药物"),
      ("缺铁性贫血", "疾病", "实验室检查", "血清铁蛋白", "检查")]),
    ("急性胰腺炎@急性胰腺炎最常见的病因是胆道结石，腹部增强CT可评估胰腺坏死范围。",
     [("急性胰腺炎", "疾病", "病因", "胆道结石", "社会学"),
      ("急性胰腺炎", "疾病", "影像学检查", "腹部增强CT", "检查")]),
    ("甲状腺乳头状癌@甲状腺乳头状癌多见于中青年女性，颈部淋巴结是其常见的转移部位。",
     [("甲状腺乳头状癌", "疾病", "多发群体", "中青年女性", "流行病学"),
      ("甲状腺乳头状癌", "疾病", "转移部位", "颈部淋巴结", "部位")]),
    ("手足口病@手足口病主要经粪口途径和密切接触传播，好发于夏秋季节。",
     [("手足口病", "疾病", "传播途径", "粪口途径", "流行病学"),
      ("手足口病", "疾病", "传播途径", "密切接触", "流行病学"),
      ("手足口病", "疾病", "多发季节", "夏秋季节", "流行病学")]),
    ("消化性溃疡@消化性溃疡可并发上消化道出血和幽门梗阻，胃镜是确诊的首选检查。",
     [("消化性溃疡", "疾病", "并发症", "上消化道出血", "疾病"),
      ("消化性溃疡", "疾病", "并发症", "幽门梗阻", "疾病"),
      ("消化性溃疡", "疾病", "内窥镜检查", "胃镜", "检查")]),
    ("儿童川崎病@川崎病又称皮肤黏膜淋巴结综合征，应与猩红热相鉴别。",
     [("川崎病", "疾病", "同义词", "皮肤黏膜淋巴结综合征", "疾病"),
      ("川崎病", "疾病", "鉴别诊断", "猩红热", "疾病")]),
    ("骨肉瘤@骨肉瘤好发于青少年的股骨远端，术前常给予新辅助化疗。",
     [("骨肉瘤", "疾病", "发病年龄", "青少年", "流行病学"),
      ("骨肉瘤", "疾病", "发病部位", "股骨远端", "部位"),
      ("骨肉瘤", "疾病", "化疗", "新辅助化疗", "其他治疗")]),
    ("带状疱疹@带状疱疹患者应注意休息，本句没有需要抽取的医学关系。", []),
    ("原发性高血压@原发性高血压患者需长期服用降压药物，并定期进行动态血压监测。",
     [("原发性高血压", "疾病", "药物治疗", "降压药物", "药物"),
      ("原发性高血压", "疾病", "辅助检查", "动态血压监测", "检查")]),
]


def build_cmeie():
    out = []
    for text, spos in CMEIE:
        spo_list = []
        for subject, stype, predicate, obj, otype in spos:
            assert subject in text and obj in text, (subject, obj)
            spo_list.append({"Combined": False, "predicate": predicate, "subject": subject,
                             "subject_type": stype, "object": {"@value": obj}, "object_type": {"@value": otype}})
        out.append({"text": text, "spo_list": spo_list})
    return out


# ---------------------------------------------------------------------------
# CHIP-CDEE
# ---------------------------------------------------------------------------
# (text, [(core_name, tendency, [character], [anatomy])])
CDEE = [
    ("患者3天前无明显诱因出现右下腹持续性疼痛，无恶心呕吐，无发热。",
     [("疼痛", "", ["持续性"], ["右下腹"]), ("恶心", "否定", [], []), ("呕吐", "否定", [], []),
      ("发热", "否定", [], [])]),
    ("胸部CT示右肺上叶结节，考虑良性病变可能。",
     [("结节", "", [], ["右肺上叶"]), ("良性病变", "不确定", [], [])]),
    ("患儿1周前出现阵发性咳嗽，伴少量白色黏痰，双肺可闻及湿啰音。",
     [("咳嗽", "", ["阵发性"], []), ("黏痰", "", ["少量", "白色"], []), ("湿啰音", "", [], ["双肺"])]),
    ("查体：腹软，全腹无压痛及反跳痛，肝脾肋下未触及。",
     [("压痛", "否定", [], ["全腹"]), ("反跳痛", "否定", [], ["全腹"])]),
    ("头颅MRI提示左侧基底节区急性脑梗死，双侧额叶少许缺血灶。",
     [("脑梗死", "", ["急性"], ["左侧基底节区"]), ("缺血灶", "", ["少许"], ["双侧额叶"])]),
    ("患者近半年体重下降约5公斤，伴间断上腹部隐痛，疑似胃溃疡。",
     [("体重下降", "", [], []), ("隐痛", "", ["间断"], ["上腹部"]), ("胃溃疡", "不确定", [], [])]),
    ("心脏彩超示左心室壁增厚，射血分数正常，未见心包积液。",
     [("增厚", "", [], ["左心室壁"]), ("心包积液", "否定", [], [])]),
    ("2年前曾行阑尾切除术，术后恢复良好。", []),
    ("颈部可触及多个肿大淋巴结，质硬，活动度差，无触痛。",
     [("肿大淋巴结", "", ["多个", "质硬", "活动度差"], ["颈部"]), ("触痛", "否定", [], [])]),
    ("双下肢轻度凹陷性水肿，皮肤无黄染。",
     [("凹陷性水肿", "", ["轻度"], ["双下肢"]), ("黄染", "否定", [], ["皮肤"])]),
]


def build_cdee():
    out = []
    for i, (text, events) in enumerate(CDEE, 1):
        for core, _, chars, anatomy in events:
            assert core in text and all(c in text for c in chars) and all(a in text for a in anatomy), core
        out.append({"id": 1000 + i, "text": text, "event": [
            {"core_name": c, "tendency": t, "character": ch, "anatomy_list": an} for c, t, ch, an in events]})
    return out


# ---------------------------------------------------------------------------
# CHIP-CDN
# ---------------------------------------------------------------------------
CDN = [
    ("2型糖尿病伴血糖控制不佳", "2型糖尿病"),
    ("高血压3级（很高危）", "高血压"),
    ("冠心病 不稳定型心绞痛", "冠状动脉粥样硬化性心脏病##不稳定性心绞痛"),
    ("左肺上叶腺癌术后", "肺恶性肿瘤##腺癌"),
    ("右侧股骨颈骨折", "股骨颈骨折"),
    ("慢性乙型病毒性肝炎", "慢性病毒性肝炎"),
    ("急性上呼吸道感染", "急性上呼吸道感染"),
    ("腰椎间盘突出伴坐骨神经痛", "腰椎间盘突出##坐骨神经痛"),
    ("脑梗死后遗症", "脑梗死后遗症"),
    ("缺铁性贫血（轻度）", "缺铁性贫血"),
    ("原发性甲状腺功能减退（亚临床）", "甲状腺功能减退症"),
    ("胆囊结石伴慢性胆囊炎", "胆囊结石伴慢性胆囊炎"),
]


def build_cdn():
    return [{"text": t, "normalized_result": n} for t, n in CDN]


# ---------------------------------------------------------------------------
# CHIP-CTC
# ---------------------------------------------------------------------------
CTC = [
    ("年龄18～75周岁，男女不限；", "Age"),
    ("经病理学确诊的非小细胞肺癌患者；", "Disease"),
    ("妊娠期或哺乳期妇女；", "Pregnancy-related Activity"),
    ("对研究药物任何成分过敏者；", "Allergy Intolerance"),
    ("入组前4周内参加过其他药物临床试验者；", "Enrollment in other studies"),
    ("签署书面知情同意书；", "Consent"),
    ("血肌酐超过正常值上限1.5倍；", "Laboratory Examinations"),
    ("预计生存期不少于3个月；", "Life Expectancy"),
    ("近6个月内有酗酒或药物滥用史；", "Addictive Behavior"),
    ("研究者认为不适合参加本研究的其他情况；", "Researcher Decision"),
    ("ECOG体力状况评分0～1分；", "Risk Assessment"),
    ("既往接受过胃大部切除术者；", "Therapy or Surgery"),
    ("正在使用华法林等抗凝药物者；", "Pharmaceutical Substance or Drug"),
    ("体内植入心脏起搏器者；", "Device"),
    ("吸烟指数大于400年支者；", "Smoking Status"),
    ("患有严重精神疾病无法配合随访，且肝功能Child-Pugh C级者；", "Multiple"),
]


def build_ctc():
    return [{"id": f"s{i}", "label": lab, "text": t} for i, (t, lab) in enumerate(CTC, 1)]


# ---------------------------------------------------------------------------
# KUAKE-QTR / KUAKE-QQR
# ---------------------------------------------------------------------------
QTR = [
    ("宝宝拉肚子吃什么药", "婴儿腹泻可以吃哪些药？儿科医生详细解答", "3"),
    ("宝宝拉肚子吃什么药", "宝宝腹泻期间的饮食注意事项", "2"),
    ("宝宝拉肚子吃什么药", "成人急性肠胃炎用药指南", "1"),
    ("宝宝拉肚子吃什么药", "夏季如何预防中暑", "0"),
    ("膝盖疼是怎么回事", "膝关节疼痛的常见原因有哪些", "3"),
    ("膝盖疼是怎么回事", "跑步后膝盖疼可以热敷吗", "2"),
    ("膝盖疼是怎么回事", "腰椎间盘突出的康复训练", "1"),
    ("膝盖疼是怎么回事", "怎样挑选合适的近视眼镜", "0"),
    ("甲亢能不能怀孕", "甲状腺功能亢进患者备孕须知", "3"),
    ("甲亢能不能怀孕", "甲亢患者日常饮食需要注意什么", "1"),
    ("牙龈出血怎么办", "刷牙时牙龈出血的原因和处理方法", "3"),
    ("牙龈出血怎么办", "鼻子经常出血是什么原因", "0"),
]
QQR = [
    ("小孩发烧怎么退烧快", "儿童发热如何快速退烧", "2"),
    ("小孩发烧怎么退烧快", "小孩发烧39度怎么退烧快", "1"),
    ("小孩发烧39度怎么退烧快", "小孩发烧怎么退烧快", "0"),
    ("小孩发烧怎么退烧快", "小孩咳嗽吃什么药", "0"),
    ("胃疼吃什么药", "胃痛应该吃什么药", "2"),
    ("胃疼吃什么药", "饭后胃疼吃什么药", "1"),
    ("胃疼吃什么药", "胃疼的原因", "0"),
    ("高血压的症状", "高血压有哪些表现", "2"),
    ("高血压的症状", "老年人高血压的早期症状", "1"),
    ("失眠怎么调理", "长期失眠应该怎么调理", "1"),
    ("失眠怎么调理", "睡不着觉怎么调理", "2"),
    ("失眠怎么调理", "失眠挂什么科", "0"),
]


def build_qtr():
    return [{"id": f"s{i}", "query": q, "title": t, "label": lab} for i, (q, t, lab) in enumerate(QTR, 1)]


def build_qqr():
    return [{"id": f"s{i}", "query1": a, "query2": b, "label": lab} for i, (a, b, lab) in enumerate(QQR, 1)]


# ---------------------------------------------------------------------------
# KUAKE-IR
# ---------------------------------------------------------------------------
IR_CORPUS = [
    ("p01", "布洛芬属于非甾体抗炎药，可用于缓解轻中度疼痛和退热，胃溃疡患者应慎用，餐后服用可减少胃肠道刺激。"),
    ("p02", "对乙酰氨基酚是常用的解热镇痛药，儿童发热时可按体重给药，两次用药间隔不少于4小时。"),
    ("p03", "孕妇补充叶酸可以降低胎儿神经管缺陷的风险，一般建议从孕前3个月开始每日补充0.4毫克。"),
    ("p04", "空腹血糖是指至少8小时未进食后测得的血糖值，正常范围为3.9～6.1mmol/L。"),
    ("p05", "糖化血红蛋白反映近2～3个月的平均血糖水平，糖尿病患者一般建议控制在7%以下。"),
    ("p06", "带状疱疹由水痘-带状疱疹病毒引起，皮疹沿神经呈带状分布，常伴明显神经痛。"),
    ("p07", "幽门螺杆菌感染可通过碳13或碳14呼气试验检测，检测前需停用抗生素和质子泵抑制剂。"),
    ("p08", "高血压患者应限制食盐摄入，每日不超过5克，并坚持规律运动和控制体重。"),
    ("p09", "近视的主要矫正方法包括佩戴框架眼镜、角膜接触镜以及屈光手术。"),
    ("p10", "尿酸升高与饮食关系密切，痛风患者应少吃动物内脏、海鲜并避免饮酒。"),
    ("p11", "过敏性鼻炎常表现为阵发性喷嚏、清水样鼻涕和鼻痒，可使用鼻用糖皮质激素治疗。"),
    ("p12", "儿童接种麻腮风疫苗后可能出现低热或局部红肿，一般两三天内自行消退。"),
    ("p13", "颈椎病患者应避免长时间低头，睡眠时枕头高度以一拳左右为宜。"),
    ("p14", "缺铁性贫血患者可多吃瘦肉、动物肝脏等富含血红素铁的食物，同时补充维生素C促进吸收。"),
    ("p15", "胃镜检查前一般需要禁食6～8小时，无痛胃镜还需要有人陪同。"),
    ("p16", "甲状腺结节大多数为良性，超声检查可以初步判断结节的性质。"),
    ("p17", "失眠患者应保持规律作息，睡前避免饮用咖啡和浓茶，必要时在医生指导下用药。"),
    ("p18", "哮喘急性发作时可吸入短效β2受体激动剂缓解症状，严重时应立即就医。"),
    ("p19", "乙肝疫苗全程接种需要3针，按照0、1、6个月的程序进行。"),
    ("p20", "骨质疏松患者应适量补充钙剂和维生素D，并进行负重锻炼以增加骨密度。"),
    ("p21", "慢性咽炎患者应戒烟限酒，少吃辛辣刺激食物，多饮水保持咽部湿润。"),
    ("p22", "布洛芬混悬液适用于儿童退热，使用前应摇匀并按说明书剂量服用。"),
    ("p23", "妊娠期糖尿病筛查通常在孕24～28周进行口服葡萄糖耐量试验。"),
    ("p24", "腰椎间盘突出症急性期应卧床休息，避免弯腰搬重物，疼痛明显时可短期使用止痛药。"),
]
# (qid, query, relevant passage ids)
IR_QUERIES = [
    ("q01", "布洛芬饭前吃还是饭后吃", ["p01"]),
    ("q02", "孕妇什么时候开始吃叶酸", ["p03"]),
    ("q03", "空腹血糖正常值是多少", ["p04"]),
    ("q04", "幽门螺杆菌呼气试验前要停药吗", ["p07"]),
    ("q05", "痛风不能吃什么", ["p10"]),
    ("q06", "打完疫苗发烧正常吗", ["p12"]),
    ("q07", "做胃镜要空腹多久", ["p15"]),
    ("q08", "乙肝疫苗打几针", ["p19"]),
]


def build_ir():
    corpus = {pid: text for pid, text in IR_CORPUS}
    for _, query, relevant in IR_QUERIES:
        assert all(p in corpus for p in relevant), query
    return {
        "KUAKE-IR/corpus.tsv": "".join(f"{pid}\t{text}\n" for pid, text in IR_CORPUS),
        "KUAKE-IR/KUAKE-IR_dev_query.txt": "".join(f"{qid}\t{q}\n" for qid, q, _ in IR_QUERIES),
        "KUAKE-IR/KUAKE-IR_dev.tsv": "".join(f"{qid}\t{p}\n" for qid, _, rel in IR_QUERIES for p in rel),
    }


# ---------------------------------------------------------------------------
# CHIP-MDCFNPC (JSON lines)
# ---------------------------------------------------------------------------
# dialog: [(speaker, sentence, [(mention, attr)])]
MDCFNPC = [
    ("d001", [
        ("患者", "医生您好，孩子这两天一直咳嗽，晚上咳得厉害。", [("咳嗽", "阳性")]),
        ("医生", "有没有发烧？", [("发烧", "其他")]),
        ("患者", "没有发烧，就是有点流鼻涕。", [("发烧", "阴性"), ("流鼻涕", "阳性")]),
        ("医生", "有没有喘息或者呼吸急促？", [("喘息", "其他"), ("呼吸急促", "其他")]),
        ("患者", "不喘，呼吸也挺平稳的。", [("喘", "阴性")]),
    ]),
    ("d002", [
        ("患者", "我最近胃不舒服，吃完饭就胃胀。", [("胃胀", "阳性")]),
        ("医生", "有反酸烧心吗？", [("反酸", "其他"), ("烧心", "其他")]),
        ("患者", "偶尔反酸，烧心倒是没有。", [("反酸", "阳性"), ("烧心", "阴性")]),
        ("医生", "可以先查一下幽门螺杆菌，排除胃溃疡。", [("胃溃疡", "不标注")]),
    ]),
    ("d003", [
        ("患者", "宝宝身上起了红疹子，有点痒。", [("红疹子", "阳性"), ("痒", "阳性")]),
        ("医生", "最近有没有吃过什么特别的食物？会不会是过敏？", [("过敏", "其他")]),
        ("患者", "不太清楚，好像吃了点芒果。", []),
        ("医生", "如果出现呼吸困难要马上去医院。", [("呼吸困难", "不标注")]),
    ]),
    ("d004", [
        ("患者", "我头晕好几天了，量血压是150/95。", [("头晕", "阳性")]),
        ("医生", "以前有高血压吗？", [("高血压", "其他")]),
        ("患者", "以前体检说过血压偏高，没有吃药。", [("血压偏高", "阳性")]),
        ("医生", "有没有胸闷胸痛？", [("胸闷", "其他"), ("胸痛", "其他")]),
        ("患者", "胸闷有一点，胸痛没有。", [("胸闷", "阳性"), ("胸痛", "阴性")]),
    ]),
    ("d005", [
        ("患者", "孩子拉肚子一天了，大便稀水样。", [("拉肚子", "阳性"), ("大便稀水样", "阳性")]),
        ("医生", "有没有呕吐？精神怎么样？", [("呕吐", "其他")]),
        ("患者", "没吐，精神还可以。", [("吐", "阴性")]),
    ]),
]


def build_mdcfnpc():
    out = []
    for dialog_id, turns in MDCFNPC:
        info = []
        for k, (speaker, sentence, findings) in enumerate(turns, 1):
            ner, seen = [], {}
            for mention, attr in findings:
                occurrence = seen.get(mention, 0)
                seen[mention] = occurrence + 1
                start = _find(sentence, mention, occurrence)
                ner.append({"mention": mention, "type": "sym", "range": [start, start + len(mention)], "attr": attr})
            info.append({"sentence_id": str(k), "speaker": speaker, "sentence": sentence, "ner": ner})
        out.append({"dialog_id": dialog_id, "dialog_info": info})
    return out


# ---------------------------------------------------------------------------
# IMCS-V2 (one JSON object shared by IMCS-V2-NER / -DAC / -SR / -MRG)
# ---------------------------------------------------------------------------
# turn: (speaker, sentence, act, [(mention, entity_type, symptom_norm or None, symptom_type or None)])
IMCS = {
    "10101": {
        "diagnosis": "小儿支气管炎",
        "self_report": "宝宝一岁半，咳嗽三天了，有痰，晚上咳得多，请问需要吃什么药？",
        "explicit": ["咳嗽", "咳痰"],
        "turns": [
            ("医生", "您好，宝宝发烧吗？", "Request-Symptom", [("发烧", "Symptom", "发热", "2")]),
            ("患者", "不发烧，就是咳嗽有痰。", "Inform-Symptom",
             [("发烧", "Symptom", "发热", "0"), ("咳嗽", "Symptom", "咳嗽", "1"), ("有痰", "Symptom", "咳痰", "1")]),
            ("医生", "有没有喘息的声音？", "Request-Symptom", [("喘息", "Symptom", "喘息", "2")]),
            ("患者", "没有喘，吃了两天小儿止咳糖浆。", "Inform-Existing_Examination_and_Treatment",
             [("喘", "Symptom", "喘息", "0"), ("小儿止咳糖浆", "Drug", None, None)]),
            ("医生", "考虑是支气管炎，建议去医院拍个胸片。", "Diagnose", [("胸片", "Medical_Examination", None, None)]),
            ("医生", "可以用雾化治疗，多给宝宝喝水。", "Inform-Drug_Recommendation",
             [("雾化", "Operation", None, None)]),
            ("患者", "好的，谢谢医生。", "Other", []),
        ],
        "reports": [
            {"主诉": "咳嗽伴咳痰三天。", "现病史": "患儿三天前出现咳嗽，有痰，夜间明显，无发热，无喘息，自服小儿止咳糖浆。",
             "辅助检查": "暂缺。", "既往史": "不详。", "诊断": "小儿支气管炎。", "建议": "完善胸片检查，雾化治疗，多饮水。"},
            {"主诉": "咳嗽三天。", "现病史": "咳嗽有痰三天，不发热，不喘，口服止咳糖浆两天。",
             "辅助检查": "无。", "既往史": "无。", "诊断": "支气管炎。", "建议": "拍胸片，雾化，多喝水。"},
        ],
    },
    "10102": {
        "diagnosis": "小儿腹泻",
        "self_report": "孩子八个月，拉肚子两天，一天拉五六次，是蛋花样的便。",
        "explicit": ["腹泻"],
        "turns": [
            ("医生", "孩子有没有呕吐？", "Request-Symptom", [("呕吐", "Symptom", "呕吐", "2")]),
            ("患者", "吐过一次，现在不吐了。", "Inform-Symptom", [("吐", "Symptom", "呕吐", "1")]),
            ("医生", "小便量怎么样，有没有减少？", "Request-Symptom", [("小便量", "Symptom", "尿量减少", "2")]),
            ("患者", "小便还可以，没有明显减少。", "Inform-Symptom", [("小便", "Symptom", "尿量减少", "0")]),
            ("医生", "做过大便常规吗？", "Request-Existing_Examination_and_Treatment",
             [("大便常规", "Medical_Examination", None, None)]),
            ("患者", "还没做，给吃了蒙脱石散。", "Inform-Existing_Examination_and_Treatment",
             [("蒙脱石散", "Drug", None, None)]),
            ("医生", "可以加用益生菌，注意补液防止脱水。", "Inform-Drug_Recommendation",
             [("益生菌", "Drug_Category", None, None), ("脱水", "Symptom", "脱水", "2")]),
        ],
        "reports": [
            {"主诉": "腹泻两天。", "现病史": "患儿两天前出现腹泻，每日五六次，蛋花样便，呕吐一次，尿量无明显减少，已服蒙脱石散。",
             "辅助检查": "暂缺。", "既往史": "不详。", "诊断": "小儿腹泻。", "建议": "完善大便常规，加用益生菌，注意补液。"},
            {"主诉": "拉肚子两天。", "现病史": "蛋花样便两天，每天五到六次，吐过一次，小便正常。",
             "辅助检查": "无。", "既往史": "无。", "诊断": "腹泻。", "建议": "益生菌，补液，查大便常规。"},
        ],
    },
    "10103": {
        "diagnosis": "上呼吸道感染",
        "self_report": "孩子四岁，昨天开始发烧，最高39度，嗓子疼。",
        "explicit": ["发热", "咽痛"],
        "turns": [
            ("医生", "有没有咳嗽流鼻涕？", "Request-Symptom",
             [("咳嗽", "Symptom", "咳嗽", "2"), ("流鼻涕", "Symptom", "流涕", "2")]),
            ("患者", "有点流鼻涕，不咳嗽。", "Inform-Symptom",
             [("流鼻涕", "Symptom", "流涕", "1"), ("咳嗽", "Symptom", "咳嗽", "0")]),
            ("医生", "吃过退烧药吗？", "Request-Existing_Examination_and_Treatment", [("退烧药", "Drug_Category", None, None)]),
            ("患者", "吃了布洛芬，烧退了一些。", "Inform-Existing_Examination_and_Treatment",
             [("布洛芬", "Drug", None, None), ("烧", "Symptom", "发热", "1")]),
            ("医生", "建议查个血常规，看看是病毒还是细菌感染。", "Inform-Medical_Advice",
             [("血常规", "Medical_Examination", None, None)]),
            ("患者", "这种情况要不要去输液？", "Request-Drug_Recommendation", [("输液", "Operation", None, None)]),
            ("医生", "一般不需要输液，多休息多喝水。", "Inform-Precautions", [("输液", "Operation", None, None)]),
        ],
        "reports": [
            {"主诉": "发热伴咽痛一天。", "现病史": "患儿一天前出现发热，最高39度，伴咽痛、流涕，无咳嗽，口服布洛芬后体温下降。",
             "辅助检查": "暂缺。", "既往史": "不详。", "诊断": "上呼吸道感染。", "建议": "查血常规，多休息多饮水。"},
            {"主诉": "发烧一天。", "现病史": "发热一天，嗓子疼，流鼻涕，不咳，吃布洛芬后好转。",
             "辅助检查": "无。", "既往史": "无。", "诊断": "上感。", "建议": "血常规，休息，喝水。"},
        ],
    },
    "10104": {
        "diagnosis": "新生儿黄疸",
        "self_report": "宝宝出生十天，皮肤还是有点黄，吃奶正常。",
        "explicit": ["黄疸"],
        "turns": [
            ("医生", "测过胆红素吗？", "Request-Existing_Examination_and_Treatment",
             [("胆红素", "Medical_Examination", None, None)]),
            ("患者", "经皮测的是12。", "Inform-Existing_Examination_and_Treatment", []),
            ("医生", "宝宝大便颜色正常吗，有没有发白？", "Request-Symptom", [("大便颜色", "Symptom", "大便异常", "2")]),
            ("患者", "大便是黄色的，不白。", "Inform-Symptom", [("大便", "Symptom", "大便异常", "0")]),
            ("医生", "这个数值可以先多晒太阳观察，如果继续升高需要蓝光治疗。", "Inform-Medical_Advice",
             [("蓝光治疗", "Operation", None, None)]),
            ("患者", "需要停母乳吗？", "Request-Precautions", []),
        ],
        "reports": [
            {"主诉": "皮肤黄染十天。", "现病史": "患儿生后十天皮肤黄染未退，吃奶正常，大便黄色，经皮胆红素12。",
             "辅助检查": "经皮胆红素12。", "既往史": "不详。", "诊断": "新生儿黄疸。", "建议": "晒太阳观察，必要时蓝光治疗。"},
            {"主诉": "皮肤发黄。", "现病史": "出生十天皮肤仍黄，吃奶好，大便不白。",
             "辅助检查": "经皮测胆红素12。", "既往史": "无。", "诊断": "黄疸。", "建议": "观察，升高则蓝光。"},
        ],
    },
}
_PRIORITY = {"1": 2, "0": 1, "2": 0}


def build_imcs():
    out = {}
    for dialog_id, d in IMCS.items():
        dialogue, implicit = [], {}
        for k, (speaker, sentence, act, mentions) in enumerate(d["turns"], 1):
            tags = ["O"] * len(sentence)
            norms, types, local, seen = [], [], {}, {}
            for mention, etype, norm, stype in mentions:
                occurrence = seen.get(mention, 0)
                seen[mention] = occurrence + 1
                start = _find(sentence, mention, occurrence)
                assert all(t == "O" for t in tags[start:start + len(mention)]), (sentence, mention)
                tags[start] = f"B-{etype}"
                for i in range(start + 1, start + len(mention)):
                    tags[i] = f"I-{etype}"
                if etype == "Symptom":
                    norms.append(norm)
                    types.append(stype)
                    if norm not in local or _PRIORITY[stype] > _PRIORITY[local[norm]]:
                        local[norm] = stype
            for norm, stype in local.items():
                if norm not in implicit or _PRIORITY[stype] > _PRIORITY[implicit[norm]]:
                    implicit[norm] = stype
            dialogue.append({"sentence_id": str(k), "speaker": speaker, "sentence": sentence, "dialogue_act": act,
                             "BIO_label": " ".join(tags), "symptom_norm": norms, "symptom_type": types,
                             "local_implicit_info": local})
        out[dialog_id] = {"diagnosis": d["diagnosis"], "self_report": d["self_report"], "dialogue": dialogue,
                          "report": d["reports"], "explicit_info": {"Symptom": d["explicit"]},
                          "implicit_info": {"Symptom": implicit}}
    return out


# ---------------------------------------------------------------------------
# MedDG (list of dialogues, each a list of annotated turns)
# ---------------------------------------------------------------------------
# turn: (speaker id, sentence, {entity field: [names]})
MEDDG = [
    [("Patients", "医生你好，我最近吃完饭就胃胀，还老打嗝。", {"Symptom": ["腹胀", "打嗝"]}),
     ("Doctor", "你好，这种情况持续多久了？有没有反酸烧心？", {"Symptom": ["反酸", "烧心"], "Attribute": ["时长"]}),
     ("Patients", "有一个多月了，偶尔反酸。", {"Symptom": ["反酸"]}),
     ("Doctor", "建议做个胃镜检查，同时查一下幽门螺杆菌。", {"Test": ["胃镜", "幽门螺杆菌检测"]}),
     ("Patients", "需要吃什么药吗？", {}),
     ("Doctor", "可以先吃奥美拉唑，饭前半小时服用。", {"Medicine": ["奥美拉唑"]})],
    [("Patients", "我肚子疼，拉肚子一天了。", {"Symptom": ["腹痛", "腹泻"]}),
     ("Doctor", "疼在哪个位置？大便是什么样子的？", {"Attribute": ["位置"], "Symptom": ["大便性状"]}),
     ("Patients", "肚脐周围疼，大便是稀水样的。", {"Symptom": ["腹痛", "腹泻"]}),
     ("Doctor", "有没有发烧？最近吃过什么不干净的东西吗？", {"Symptom": ["发热"], "Attribute": ["诱因"]}),
     ("Patients", "没发烧，昨天吃了凉菜。", {}),
     ("Doctor", "考虑急性肠胃炎，可以吃蒙脱石散，注意补充水分。", {"Disease": ["肠胃炎"], "Medicine": ["蒙脱石散"]})],
    [("Patients", "医生，我经常便秘，三四天才一次大便。", {"Symptom": ["便秘"]}),
     ("Doctor", "平时喝水多吗？吃蔬菜水果多吗？", {"Attribute": ["诱因"]}),
     ("Patients", "喝水比较少，也不太爱吃蔬菜。", {}),
     ("Doctor", "建议多喝水，多吃富含膳食纤维的食物，可以短期用乳果糖。", {"Medicine": ["乳果糖"]})],
    [("Patients", "我上腹部隐隐作痛，饿的时候更明显。", {"Symptom": ["腹痛"]}),
     ("Doctor", "你好，有没有黑便？", {"Symptom": ["黑便"]}),
     ("Patients", "没有，大便颜色是正常的黄色。", {"Symptom": ["黑便"]}),
     ("Doctor", "饥饿痛要考虑十二指肠溃疡，建议做胃镜明确诊断。", {"Disease": ["十二指肠溃疡"], "Test": ["胃镜"]})],
]
_MEDDG_FIELDS = ("Symptom", "Medicine", "Test", "Attribute", "Disease")


def build_meddg():
    return [[{"id": role, "Sentence": sentence, **{f: list(ents.get(f, [])) for f in _MEDDG_FIELDS}}
             for role, sentence, ents in dialogue] for dialogue in MEDDG]


# ---------------------------------------------------------------------------
# CMedCausal (end_idx exclusive)
# ---------------------------------------------------------------------------
# (text, [(head, relation, tail)]) where tail is a mention or, for relation 2, (head, tail) of a causal pair
CAUSAL = [
    ("长期高盐饮食会导致血压升高，血压长期控制不佳可引起左心室肥厚。",
     [("长期高盐饮食", 1, "血压升高"), ("血压长期控制不佳", 1, "左心室肥厚")]),
    ("幽门螺杆菌感染是慢性胃炎的重要病因，慢性胃炎属于消化系统疾病。",
     [("幽门螺杆菌感染", 1, "慢性胃炎"), ("消化系统疾病", 3, "慢性胃炎")]),
    ("糖尿病患者血糖控制不佳时，高血糖可导致糖尿病视网膜病变。",
     [("糖尿病患者", 2, ("高血糖", "糖尿病视网膜病变")), ("血糖控制不佳", 2, ("高血糖", "糖尿病视网膜病变"))]),
    ("在老年人中，骨质疏松可增加髋部骨折的风险。",
     [("老年人", 2, ("骨质疏松", "髋部骨折"))]),
    ("胆道结石阻塞胰管可诱发急性胰腺炎，急性胰腺炎常表现为剧烈上腹痛。",
     [("胆道结石阻塞胰管", 1, "急性胰腺炎"), ("急性胰腺炎", 1, "剧烈上腹痛")]),
    ("缺铁性贫血是小细胞低色素性贫血的一种，常由慢性失血引起。",
     [("小细胞低色素性贫血", 3, "缺铁性贫血"), ("慢性失血", 1, "缺铁性贫血")]),
    ("规律运动有助于改善睡眠质量。", []),
    ("吸烟可引起慢性支气管炎，慢性支气管炎反复发作可进展为慢性阻塞性肺疾病。",
     [("吸烟", 1, "慢性支气管炎"), ("慢性支气管炎反复发作", 1, "慢性阻塞性肺疾病")]),
]


def _node(text: str, mention: str) -> dict:
    start = _find(text, mention)
    return {"mention": mention, "start_idx": start, "end_idx": start + len(mention)}


def build_causal():
    out = []
    for text, relations in CAUSAL:
        rels = []
        for head, kind, tail in relations:
            if kind == 2:
                inner = {"type": "relation", "head": _node(text, tail[0]), "relation": 1, "tail": _node(text, tail[1])}
                rels.append({"head": _node(text, head), "relation": 2, "tail": inner})
            else:
                rels.append({"head": _node(text, head), "relation": kind, "tail": {"type": "mention", **_node(text, tail)}})
        out.append({"text": text, "relation_of_mention": rels})
    return out


# ---------------------------------------------------------------------------
# assembly
# ---------------------------------------------------------------------------


def render() -> dict[str, str]:
    """{path under samples/eval/: file content} for every file of this module."""
    def pretty(obj) -> str:
        return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"

    files = {
        "CMeIE/CMeIE_dev.json": _jsonl(build_cmeie()),
        "CHIP-CDEE/CHIP-CDEE_dev.json": pretty(build_cdee()),
        "CHIP-CDN/CHIP-CDN_dev.json": pretty(build_cdn()),
        "CHIP-CTC/CHIP-CTC_dev.json": pretty(build_ctc()),
        "KUAKE-QTR/KUAKE-QTR_dev.json": pretty(build_qtr()),
        "KUAKE-QQR/KUAKE-QQR_dev.json": pretty(build_qqr()),
        "CHIP-MDCFNPC/CHIP-MDCFNPC_dev.jsonl": _jsonl(build_mdcfnpc()),
        "IMCS-V2/IMCS-V2_dev.json": pretty(build_imcs()),
        "MedDG/MedDG_dev.json": pretty(build_meddg()),
        "CMedCausal/CMedCausal_dev.json": pretty(build_causal()),
    }
    files.update(build_ir())
    return files


def eval_texts() -> list[str]:
    """Every authored eval text, for make_samples.py's eval/SFT overlap check."""
    texts = [t for t, _ in CMEIE] + [t for t, _ in CDEE] + [t for t, _ in CDN] + [t for t, _ in CTC]
    texts += [x for q, t, _ in QTR for x in (q, t)] + [x for a, b, _ in QQR for x in (a, b)]
    texts += [t for _, t in IR_CORPUS] + [q for _, q, _ in IR_QUERIES]
    texts += [s for _, turns in MDCFNPC for _, s, _ in turns]
    texts += [d["self_report"] for d in IMCS.values()] + [t[1] for d in IMCS.values() for t in d["turns"]]
    texts += [s for dialogue in MEDDG for _, s, _ in dialogue] + [t for t, _ in CAUSAL]
    return texts


def readme_rows() -> str:
    """Rows for samples/README.md's file table."""
    rows = [
        ("CMeIE/CMeIE_dev.json", "JSON lines, relation triples", f"{len(CMEIE)} sentences"),
        ("CHIP-CDEE/CHIP-CDEE_dev.json", "JSON array, clinical finding events", f"{len(CDEE)} texts"),
        ("CHIP-CDN/CHIP-CDN_dev.json", "JSON array, diagnosis normalisation", f"{len(CDN)} diagnoses"),
        ("CHIP-CTC/CHIP-CTC_dev.json", "JSON array, screening criteria", f"{len(CTC)} criteria"),
        ("KUAKE-QTR/KUAKE-QTR_dev.json", "JSON array, query–title match 0–3", f"{len(QTR)} pairs"),
        ("KUAKE-QQR/KUAKE-QQR_dev.json", "JSON array, query–query relation 0–2", f"{len(QQR)} pairs"),
        ("KUAKE-IR/{corpus.tsv,KUAKE-IR_dev_query.txt,KUAKE-IR_dev.tsv}", "TSV, passage retrieval",
         f"{len(IR_CORPUS)} passages / {len(IR_QUERIES)} queries"),
        ("CHIP-MDCFNPC/CHIP-MDCFNPC_dev.jsonl", "JSON lines, finding status in dialogues", f"{len(MDCFNPC)} dialogues"),
        ("IMCS-V2/IMCS-V2_dev.json", "JSON object, annotated consultations (NER/DAC/SR/MRG)", f"{len(IMCS)} dialogues"),
        ("MedDG/MedDG_dev.json", "JSON array of dialogues, entity-annotated turns", f"{len(MEDDG)} dialogues"),
        ("CMedCausal/CMedCausal_dev.json", "JSON array, causal relations (exclusive end)", f"{len(CAUSAL)} texts"),
    ]
    return "\n".join(f"| `eval/{path}` | {kind} | {count} |" for path, kind, count in rows)


def check(root) -> list[str]:
    """Problems in the written files (they must match the generator and be self-consistent)."""
    errors = []
    for rel, content in render().items():
        if (root / rel).read_text(encoding="utf-8") != content:
            errors.append(f"eval/{rel} differs from cblue_samples output")
    labels = {r["label"] for r in build_ctc()}
    if len(labels) != len(CTC):
        errors.append("CHIP-CTC samples should each use a different label")
    if {lab for *_, lab in QTR} != {"0", "1", "2", "3"} or {lab for *_, lab in QQR} != {"0", "1", "2"}:
        errors.append("KUAKE-QTR/QQR samples must use every label")
    acts = {t[2] for d in IMCS.values() for t in d["turns"]}
    if len(acts) < 8:
        errors.append("IMCS-V2 samples should cover at least 8 dialogue acts")
    return errors
