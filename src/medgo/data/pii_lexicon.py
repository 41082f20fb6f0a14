"""Word lists behind the name detector of :mod:`medgo.data.pii`.

A Chinese personal name is a surname (one character, or one of the compound surnames) and a
given name of one or two characters. Neither part is a closed class, so the detector scores a
candidate instead of looking it up: how common its surname is, whether its given-name
characters are ones people are named with, and whether it is really the start of a clinical
term or an everyday word (``高热``, ``黄疸``, ``马上``, ``明天``) that merely begins with a surname
character. These tables were written for medgo from general knowledge of Chinese naming
(surname frequency ranks, characters common in given names) and clinical vocabulary; they are
deliberately broad rather than fitted to any evaluation set.
"""

from __future__ import annotations


def words(text: str) -> tuple[str, ...]:
    """A word list written as whitespace-separated words."""
    return tuple(text.split())


#: The most frequent surnames (roughly the top 100, about 85 % of the population).
SURNAMES_COMMON = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)

#: Less frequent single-character surnames (ranks ~100-400) and rare ones met in records.
SURNAMES_OTHER = (
    "常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍"
    "涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党"
    "宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
    "仉亓乜冼郦禚笪逄揭蔺粟勾扈郇雍却璩濮寿通燕冀郏浦别慕茹习宦鱼容慎戈庾暨居衡步都弘匡国广禄阙殳沃利蔚越"
    "夔隆厍晁融訾阚那空毋养鞠须丰巢蒯相后荆红竺权逯盖益桓公钮龙闻鄂郜苏闫练植钭禤楼过缑展续伏年哈朴区"
    "铁谈计邰栗宿洪武官郗琚满汝来和贝俸嵇糜闭仝酆"
)

#: Compound surnames; a candidate starting with one is parsed as compound first.
SURNAMES_COMPOUND = words(
    """
    欧阳 司马 诸葛 上官 东方 皇甫 慕容 令狐 夏侯 尉迟 公孙 长孙 宇文 司徒 司空 端木 南宫 西门 东郭 独孤
    轩辕 呼延 万俟 闻人 澹台 公冶 宗政 濮阳 淳于 单于 太叔 申屠 赫连 拓跋 百里 钟离 左丘 段干 巫马 公西
    漆雕 乐正 壤驷 公良 夹谷 宰父 谷梁 梁丘 羊舌 第五 东门 南门 亓官 司寇 鲜于 闾丘 仲孙 叔孙 颛孙 公羊
    微生 纳兰 爱新觉罗
    """
)

#: Surname characters that are also everyday or clinical words on their own (``高``热, ``于``今日,
#: ``时``有, ``常``规); a candidate starting with one needs more evidence.
SURNAMES_AMBIGUOUS = "于和向时常全应成明过那都能相通后别来门公国广区单解曲车丰红万"

#: Characters very often used in given names (the first ~450 by frequency, written from
#: knowledge of modern naming; both sexes and older generations).
GIVEN_COMMON = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红鹏辉玲丹莉斌宁琳颖波婷雪鑫龙飞凯慧峰浩宇轩然博文"
    "子梓涵欣怡萱雨彤诗琪悦妍婧媛蕾菲薇露莹璐瑶茜晓晨曦思嘉佳俊豪瑞昊天逸一诚铭哲晟楷锦皓毅鸿雄彬峻坤庆祥胜春"
    "福荣贵德江山兵武振忠义仁信智学建国志海燕兰梅凤珍芬淑素琴云清婉远航亮成东新立卫永长树林森松柏泽润洁楠雅倩"
    "琦璇梦馨语乐安心宏光伦家宝金银花翠菊莲荷兴旺发财富贤良善美秋冬夏阳晶亚丰利达耀辰星月凡帆扬翔鹤鹰虎彪健康"
    "寿喜欢笑勤正中和定春生恩惠慈爱君民军红卫东方圆满升启明亮昌盛茂荣桃李杏兰蓉蓓蕊芸芮芷茗茹莎菁萌蔚艺苗茵"
    "琼瑛瑾瑜珊珂瑗琰玮玥琬瑄玫瑰璟琛昕昱晗晔煜烨炜焱钰锐铮钧锋镇骏驰腾麟淼垚岩峥嵘岚崇巍川溪沛澜瀚渊源泉湘滨"
    "潇沐沁淳洪浚淇溢漫滢潼澄诺桐墨图行依辉涵轩宸睿熙煊烁灿琨琳璋瑶琪绮绍维纬缘纯绣彩影凝冰霜露虹霓韵音笛"
    "歌舞书画墨砚棋琴剑锋戈盾城堡亭楼阁轩廷殿宫宇宙乾坤元亨贞吉祺祯禧祥福禄寿康宁泰安和顺平静怡悦乐欣喜庆"
    "丽娴淑雅婉婷娇媚妮娅婕婵娥姣姗姝婷嫣嫦嫱嬿媛娉妤妍妙姿威武刚毅勇猛强壮健力功成业创新颖聪慧敏捷睿智哲理"
    "学思想念忆怀志远宏图鹏程前途光辉耀煌灵秀俊杰英豪雄伟峰岭峻崎巍屹立中华国民邦家梁栋材栋柱森林桦樟枫桂"
    "柳杨槐榕楠杉柏松竹菊兰梅莲荷芝萱蕙薇芳芬芹芸苓茜荟莺燕鸽鹃鹂凤凰麟鹤鸿雁鹏鹰龙虎豹彪骏驹骐骥驰骋"
    "德仁义礼智信忠孝廉耻勤俭谦让恭宽厚敦朴诚实贤良淑慎晴朗旭曙晖暄晏昭显晶晨曦皓白洁清澈澄湛深邃渊博"
    "一二三四五六七八九十百千万亿双友朋宾客伯仲叔季孟长幼少小大新"
)

#: Further characters met in given names, less often.
GIVEN_OTHER = (
    "焕炳炯炫烽焰熠燊烜炅旻昀昶晋晟景暖暮曜朔朗望期珏玲玳珍珑珞琅琦琮琏琐瑁瑕瑙瑚瑞瑭璇璨璘璞"
    "珺琇瑢瑒璠璎瓒甜甫畅畴登皎盈盛眉真睦知矜石砺硕磐礼祉祎祚祝神禅秉秦程穆稳穹穗究空窈竣端笙笑筠箐箫篁"
    "籍粲精素索紫绚绢绫绮绵缤缨罡群羡羽翊翌翎翔翠翩翰耀耕聪育胤能舒舟航舫舰良艳芃芊芙芥芦芩芪芫芭芯芽苇"
    "苑若苹茉茂范茹荃荏荐荣荔荞莉莘莞莹菡菱菲萍萦萧萨落葆葳蒂蓁蓝蔓蔷蕴蕾薰藤蘅虔虞蛟衡衍裕褀襄西覃观觅"
    "誉语诚诗谊谨谦豫贝贞贤贻资赫赵超越跃路轩辉迎进远逍遥邈郁鄂采金鉴钊铎铠锟锡锦镕镭长闯闻阁阔阳阿陆陵"
    "隆雁雍雯霄霆霏霖霞靓靖静韬韶顺颂颐风飒飘馥驿骁高魁鲲鸣鹭黎鼎齐龄佑佩佳侃俊俐倩偲儒允充兆先克冠冬凌凯"
    "函刚则创励劭勋勉卉卓南卿厚友叶启周咏品哲唯善嘉园坚城培基堂增壁士声夏多大天奇奕奥妃妙妹姗婉婕媚嫣子孜"
    "宁安宛宜宝宣宸家容宾寅富宽尊小尧岱峙崇嵩川巧巨希帅常幸庆康庭廷弈弘彤彦彬征徽忆怀怡恒恬悠惠意慈慕懿"
    "成承振捷敬文斌旭昂昆昊昌明易春昭晋晓晴智曼朝木本朵杉材村杰松林柔栋树栩根格桢梁梓森植楚榆槿樱欢歆正武"
    "毓民沛河泓波泽津洁洋洲浩海涓淑淳添清渝湖湘源溪滔潮澜灵炜烨然照熙燕特玄玉王环玮珂"
)

#: Characters that do not occur in given names but are frequent in clinical text; a candidate
#: whose given part contains one is not a name even after a strong label.
NEVER_GIVEN = (
    "病症炎痛疼痒肿瘤癌疸斑淋咳嗽喘痰吐泻便尿血压脂糖热烧冷寒疹疱疮癣溃疡脓胀闷晕眩酸胃肠肝肺肾脾胆脑髓腰背"
    "颈胸腹眼耳鼻喉齿舌肤肌筋脉管腺囊膜腔科院医药剂片丸汤散膏液针注射术检查诊治疗护的了是在有与及或等也都就"
    "据按须需该使并却且而"
    "还又把被让给从到对于为以而但因所则即若如虽其此该这那某每各个些种类次位年月日时分秒岁号床室楼层路街区县"
    "镇乡村省市第已未无不没否很太最更较稍略均约共计左右上下前后内外侧部处型性度率量值例组名诉述称说道问答"
    "吃喝服用做看听拿放打开关出入进退回来去起坐躺睡醒走跑跳哭叫喊咬抓吸呼排泄呕恶腐臭痿瘫萎缩梗塞栓死亡伤残"
)

#: Clinical terms, drugs, formulas and organisms that begin with a surname character. A name
#: candidate that is (or begins) one of these is rejected in every context.
CLINICAL_TERMS = words(
    """
    党参 沙参 石菖蒲 桑叶 桑白皮 桑寄生 桑椹 益母草 红花 红景天 红参 全蝎 金樱子 金钱草 金匮 马齿苋 马勃
    牛蒡子 柏子仁 龙眼肉 白茅根 白头翁 白扁豆 白花蛇舌草 黄药子 芦根 车前草 甘松 甘麦 谷芽 苏子 苏叶 荆芥
    秦皮 姜黄 贝母 蒲黄 温胆 霍奇金 贝赫切特 史蒂文斯 马凡 雷诺 吉兰 柯萨奇 席汉 艾迪生 尤文 韦格纳 孟乔森
    雷特 毕奥 杜氏 鲍曼 费城 卓艾 利什曼 贝尔 霍纳 莫西 甘精 伏立 万古 利福 利奈 利巴 辛伐 雷尼 雷贝 兰索
    苏打 丁螺 丁卡 红霉 林可 曲马 曲美 曲安 左氧 左甲 左旋 来曲 司可 米索 米非 华佗
    高血压 高血糖 高血脂 高脂 高尿酸 高热 高烧 高钾 高钠 高钙 高渗 高颅压 高龄 高危 高度 高峰期 高敏
    高凝 高压 高位 高频 高剂量 高流量 高原 高分化 高级别 黄疸 黄染 黄体 黄芪 黄连 黄芩 黄柏 黄精 黄痰
    黄斑 黄褐 黄酮 黄素 黄色 白内障 白血病 白癜风 白带 白斑 白细胞 白蛋白 白术 白芍 白芷 白及 白果 白色
    白苔 白塞 白喉 白虎汤 白天 白班 石淋 石膏 石斛 石棉 石化 石灰 石蜡 常咳 常规 常染色体 常见 常用 常温
    常年 房颤 房扑 房早 房室 房间隔 房缺 梅毒 梅核气 麻疹 麻木 麻醉 麻黄 麻痹 麻风 包块 包虫 包皮 包膜
    包裹 包扎 焦虑 冷汗 冷敷 冷感 艾滋 艾灸 艾叶 宫颈 宫缩 宫外孕 宫腔 宫体 窦性 窦道 关节 关元 阳性
    阳虚 阳痿 唐氏 陈旧 陈皮 舒张 舒适 屈曲 霍乱 叶酸 金黄 金刚烷胺 金银花 牛皮癣 牛黄 牛膝 牛奶 柴胡
    桂枝 杜仲 田七 夏枯草 秦艽 连翘 龙胆 龙骨 龙眼 马兜铃 毛细血管 毛囊 毛发 甘油 甘露醇 甘草 葛根
    何首乌 苏合香 苏醒 谷丙 谷草 谷氨 谷维素 贾第 钟摆 管型 管腔 管状 温病 温阳 温度 温热 康复 安神 安宫
    安静 安眠 安慰 齐墩果 强直 孔源性 罗红霉素 卡托普利 向心性 明显 全血 全身 全麻 应激 应用 成骨 和胃
    时有 单侧 单纯 解大便 解小便 解痉 曲张 车前 史密斯 汤剂 钱币 蒲公英 薄荷 丁香 鹿茸 熊胆 麦冬 麦芽
    田螺 蔡氏 房性 邵氏 季节 宁心 乔木 施行 华法林 方案 方法 方式 方剂 左侧 左心 甲状腺 于今 于昨 于晨
    于入 于外 于当 于门 于我 于本 于某 于院
    """
)

#: Everyday words beginning with a surname character that follow role words, colons and
#: self-introductions in dialogue and notes ("医生：马上…", "患者：明天…", "我是江苏人").
COMMON_WORDS = words(
    """
    马上 马虎 明天 明白 明年 明早 明确 方便 方面 方向 万一 于是 何时 何况 常常 全部 全都 应该 应当 高兴
    安心 安排 安全 江苏 江西 江浙 和平 时候 时间 时常 成功 成人 成年 向来 向前 龙头 金额 金属 白天 白白
    石头 文件 文化 文字 申请 包括 管理 纪录 史上 温馨 康乐 齐全 乔迁 强烈 戴上 孔雀 罗列 施工 毕业 能够
    查看 查询 查体 区域 单位 单独 解决 解释 曲线 车辆 那个 那么 那些 过去 过来 过敏 农村 仇恨 丰富 红色
    红肿 公司 公斤 公里 国家 国内 广东 广州 广西 来院 来到 来自 相关 相同 通过 通知 都是 后来 别人 门诊
    易感 易怒 余下 余无 严重 连续 尚未 尚可 尤其 符合 越来 钱财 苏州 杭州 黄色 张口 李子 刘海 陈述 杨树
    赵州 周围 周身 周末 周一 周二 周三 周四 周五 周六 周日 吴江 徐州 孙子 孙女 朱红 胡说 郭外 林区 罗马
    郑州 梁山 谢谢 宋体 唐山 许多 许可 韩国 冯氏 邓氏 曹操 彭湃 曾经 曾有 肖像 田间 董事 潘多拉 蒋介
    蔡氏 余额 杜绝 叶片 程序 程度 苏联 魏晋 吕氏 丁点 任何 任务 沈阳 姚明 卢湾 姜汤 崔氏 钟表 钟点 谭氏
    陆续 陆地 汪洋 范围 金钱 石家 廖氏 贾氏 夏天 夏季 韦氏 付费 付款 傅氏 白领 邹氏 孟氏 熊猫 秦岭 邱氏
    江湖 尹氏 薛氏 闫氏 段落 雷达 侯氏 龙门 史料 陶瓷 黎明 贺卡 顾问 顾客 毛病 郝氏 龚氏 邵氏 万元 钱包
    严格 严肃 覃氏 武汉 戴着 莫名 孔子 向着 汤药 常见 温水 康复 施氏 文明 牛肉 樊氏 葛氏 邢台 安徽 齐鲁
    易于 乔治 伍氏 庞大 颜色 颜面 倪氏 庄氏 聂氏 章节 鲁迅 岳母 岳父 翟氏 殷切 詹氏 申报 欧洲 耿直 关心
    关系 关于 关注 兰州 焦急 俞氏 左边 柳州 甘肃 祝愿 祝福 包子 宁波 宁夏 尚且 符号 舒服 阮氏 柯氏 纪念
    梅州 童年 凌晨 毕竟 单子 季度 裴氏 霍氏 涂抹 成都 苗条 谷物 盛行 曲折 翁氏 冉冉 骆驼 蓝色 路上 路过
    游泳 游戏 辛苦 靳氏 管子 柴油 蒙古 鲍鱼 华为 喻氏 祁连 蒲扇 房子 房间 滕氏 屈服 饶恕 解开 牟利 艾草
    尤为 阳光 时刻 穆斯林 农民 司机 卓越 古代 吉林 缪氏 简单 简直 车上 项目 连忙 芦荟 麦当劳 褚氏 娄底
    窦氏 戚氏 岑氏 景色 党员 宫廷 费用 卜卦 冷静 晏氏 席位 卫生 卫生间 米饭 柏油 宗教 瞿氏 桂林 全家
    佟氏 应急 臧氏 闵行 苟且 邬氏 边上 卞氏 姬氏 师傅 和好 仇人 栾氏 隋朝 商量 商场 刁难 沙发 荣幸 巫师
    寇氏 桑拿 郎中 甄别 丛林 仲裁 虞氏 敖包 巩固 明星 佘氏 池塘 查出 麻烦 苑氏 迟到 邝氏 上午 上次 上面
    上周 东西 东北 南方 西医 西药 公共 长期 长时间
    """
)

#: Cue words. Order inside each tuple does not matter; the regexes are built longest first.
#: Form fields after which a name follows (with ``：``/``:`` or a space).
LABEL_CUES = words(
    """
    姓名 患者姓名 病人姓名 患儿姓名 家属姓名 联系人姓名 监护人姓名 客户姓名 就诊人姓名 签名 签字 签字人
    签名人 医师签名 医生签名 患者签名 病人签名 家属签名 护士签名 本人签名 记录者 记录人 记录医师
    记录医生 书写者 书写人 书写医师 报告医师 报告医生 报告者 报告人 审核医师 审核医生 审核者 审核人 审核
    审签 检查者 检查医师 检查医生 检验者 检验人 检验师 检验医师 诊断医师 诊断医生 录入者 录入人 复核人
    复核者 核对人 核对者 发药人 配药人 调配人 操作者 操作医师 操作人 术者 主刀 主刀医师 主刀医生 一助
    二助 助手 麻醉医师 麻醉医生 麻醉师 器械护士 巡回护士 洗手护士 随访人 随访者 随访员 随访医生 随访医师
    随访护士 回访人 填表人 填报人 登记人 随访对象 回访对象 访视对象 被随访人 联系人 紧急联系人 监护人
    法定代理人 代理人 委托人 受托人 被委托人 授权人 被授权人 见证人 谈话医师 谈话医生 谈话人 告知医师
    陪同人 陪护人 陪诊人 户名 开户名 账户名 收款人 付款人 持卡人 户主 收件人 寄件人 申请人 送检医师
    送检医生 申请医师 申请医生 开单医生 开单医师 开方医生 处方医师 转诊医生 转诊医师 接诊医生 接诊医师
    首诊医生 首诊医师 经治医生 经治医师 主治医生 主治医师 主任医师 副主任医师 住院医师 主管医师 主管医生
    主诊医师 管床医生 管床医师 值班医生 值班医师 会诊医师 会诊医生 上级医师 责任护士 主管护士 值班护士
    接班护士 交班护士 责任医生 责任医师 护士长 带教老师 指导老师 指导医师 药师 技师 医师 受检者 被检者
    就诊人 就诊者 体检者 受试者姓名 Name NAME name
    """
) + ("姓 名", "姓\u3000名", "姓  名")

#: Role words a name directly follows (``患者张伟``, ``主治医师李明``, ``其女儿王芳``).
ROLE_CUES = words(
    """
    患者 病人 患儿 病患 伤者 产妇 孕妇 受检者 被检者 就诊者 病友 家属 联系人 监护人 妻子 丈夫 爱人 配偶
    儿子 女儿 父亲 母亲 爸爸 妈妈 哥哥 姐姐 弟弟 妹妹 孙子 孙女 外孙 外孙女 儿媳 女婿 老伴 侄子 侄女
    之子 之女 护士 医生 医师 大夫 主任 教授 同事 朋友
    """
) + tuple(c for c in LABEL_CUES if c not in ("签字", "签名", "审核", "助手", "Name", "NAME", "name", "户主"))

#: Self-introductions and questions about a name.
INTRO_CUES = words(
    """
    我是 我叫 名叫 叫做 本人 这是 您是 你是 他叫 她叫 他是 她是 我就是 孩子叫 儿子叫 女儿叫 爸爸叫
    妈妈叫 父亲叫 母亲叫 老伴叫 爱人叫 患者叫 名字叫 名字是 姓名是 姓名为 尊敬的 亲爱的 敬爱的 你好，
    您好， 你好, 您好, 你好！ 您好！
    """
)

#: Verbs whose object is usually a person (``电话回访王芳``, ``通知李娜``).
VERB_CUES = words(
    """
    随访 回访 电话随访 电话回访 联系 通知 告知 告诉 致电 询问 看望 探望 委托 拜访 转告 提醒 嘱咐 交代
    问候
    """
)

#: Introductions after which a bare surname is a name (``我姓王``).
SURNAME_INTRO_CUES = ("我姓", "免贵姓", "他姓", "她姓", "患者姓", "姓")

#: Relations written in brackets after a name (``李华（女儿）``).
RELATIONS = words(
    """
    本人 患者 患者本人 家属 妻子 丈夫 爱人 配偶 儿子 女儿 父亲 母亲 之子 之女 哥哥 姐姐 弟弟 妹妹 孙子
    孙女 儿媳 女婿 监护人 委托人 代理人 朋友 同事
    """
)

#: Words after which a name commonly stands in running text; they help choose where a name
#: begins and let a bare surname stand before a title (``今日李主任查房``, ``向王芳家属交代``).
WEAK_LEFT_CUES = words(
    """
    向 给 与 和 跟 同 由 经 请 让 叫 找 问 帮 陪 随 及 、 的 是 为 对 被 把 替 谢谢 感谢 联系 通知 告知
    告诉 委托 授权 致电 电话 随访 回访 看望 接诊 介绍 转告 嘱咐 请示 汇报 报告 邀请 今日 今天 昨日 昨天
    明日 上午 下午 晚上 晨间 当日 次日 科 室 院 部 组 中心 病区 好 哦 啊 嗯 您好 你好 查房 退回 转给
    交给 发给 寄给 汇至 转入 称 致
    """
)

#: Honorifics after a name or a bare surname (``王先生``, ``张伟女士``).
HONORIFICS = words(
    """
    先生 女士 小姐 阿姨 叔叔 大爷 大妈 大娘 奶奶 爷爷 老师 同志 师傅 老人 老先生 老太太 老太 大哥 大姐
    阿婆 阿公 伯伯 伯母 婆婆 同学 夫人 太太 老板 姐姐 哥哥 阿伯 小朋友 老伯 伯父 姑娘
    """
)

#: Professional titles after a name or a bare surname (``李主任``, ``王芳护士``). Longer titles
#: are matched whole, so ``主任医师`` never leaves ``任`` as a surname before ``医师``.
TITLES = words(
    """
    医生 医师 大夫 主任 副主任 主任医师 副主任医师 主治医师 主治医生 住院医师 主管医师 主管医生 护士
    护士长 护师 主管护师 教授 副教授 院长 副院长 药师 技师 主任护师 科长 处长 博士 主管护士 责任护士
    值班医生 值班医师 值班护士 实习医生 进修医生 规培医生
    """
)

#: Words right after a name that mark it as a person (family, signatures, greetings, ownership).
RIGHT_PERSON_CUES = words(
    """
    家属 的家属 之子 之女 之妻 之夫 的儿子 的女儿 的妻子 的丈夫 的母亲 的父亲 的爱人 的家人 的孩子
    的病情 签字 签名 签署 （签字） (签字) （签名） (签名) 本人 名下 你好 您好 ，你好 ，您好 ,你好 ,您好
    同学 代为 代签 陪同 及其家属 和家属 ，本人 ,本人
    """
)

#: Words that may follow a name in running text (a name ends where one of these starts).
RIGHT_BOUNDARY_WORDS = words(
    """
    诉 自诉 述 主诉 因 于 在 今 昨 前 近 入院 来 就诊 出院 表示 同意 拒绝 要求 陪同 告知 前来 签 查房
    指示 认为 会诊 等 及 和 与 的 是 为 已 未 经 行 予 现 称 说 反映 以 由 将 也 均 性别 年龄 出生 电话
    手机 住址 身份 民族 职业 婚姻 籍贯 科室 床号 住院号 门诊号 病案号 查看 复诊 随访 接听 不 没 有 也 要
    想 对 还 就 吗 呢 啊 吧 了 着 住 今年 今天 昨天 去年 岁 男 女 主任 医生 老师 先生 女士 护士 教授
    住院 入住 收入 转入 转院 手术 术后 服用 口服 目前 病情 一般 精神 神志 安静 入睡 明日 明天 明早 明晨
    下周 本周 上午 下午 晚上 当天 当日 次日 每日 每天 按时 定期 务必 携带 空腹 复查
    """
)
