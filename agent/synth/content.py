"""Payload content for synthetic sessions: mixed English/Chinese UTF-8 text, binary, domains.

Design: all payloads are slices of two corpora built once per run from the
seeded RNG — a 6 MiB HTML-ish text corpus (Zipf-weighted pseudo-English
words, common CJK characters and real Chinese words, UTF-8) and a 16 MiB
binary corpus standing in for images, video and ciphertext. Slicing is cheap
and keeps keyword matchers busy on realistic byte distributions (a slice may
cut a UTF-8 sequence, as TCP segments do).

Domains follow a Zipf(1) popularity over 3000 names, each resolved lazily to a
stable public-looking server address drawn from prefixes common at Chinese
gateways, so popular sites get many flows to the same server.

Everything comes from the one ``random.Random`` passed in, so a seed fully
determines the content (the reference tool used ``os.urandom`` for binary
bytes; we use ``Random.randbytes`` to be reproducible).
"""

from __future__ import annotations

import random
from itertools import accumulate

TEXT_CORPUS_BYTES = 6 << 20
BINARY_CORPUS_BYTES = 16 << 20
DOMAIN_COUNT = 3000
BODY_SIZE_CAP = 8 << 20  # largest HTTP/TLS response body

# One string, split: far more readable than a 110-item literal.
_CN_WORDS_TEXT = (
    "中国 北京 上海 广州 深圳 网络 安全 新闻 视频 下载 登录 密码 用户 手机 游戏 微信 支付 银行 "
    "账号 注册 服务 政府 公司 学校 医院 数据 信息 系统 管理 技术 产品 价格 购买 订单 快递 "
    "天气 体育 足球 电影 音乐 小说 图片 搜索 地图 旅游 酒店 机票 股票 基金 理财 贷款 保险 "
    "招聘 工作 教育 考试 健康 美食 汽车 房产 科技 互联网 人工智能 云计算 服务器 数据库 "
    "软件 硬件 芯片 通信 运营商 宽带 路由器 防火墙 代理 翻墙 VPN 病毒 木马 漏洞 攻击 "
    "黑客 加密 解密 证书 隐私 举报 投诉 通知 公告 会议 文件 报告 合同 发票 财务"
)
CN_WORDS: tuple[str, ...] = tuple(_CN_WORDS_TEXT.split())
# The first 3500 code points of the CJK Unified Ideographs block stand in for "common" characters.
CJK: tuple[str, ...] = tuple(chr(c) for c in range(0x4E00, 0x4E00 + 3500))

_SYLLABLES = (
    "ka", "to", "ri", "men", "ser", "vo", "lin", "dra", "pex", "qua", "ston", "ber", "gal", "nix", "tor",
    "ul", "am", "ex", "in", "on", "et", "is", "pro", "con", "tra", "ment", "ing", "tion", "ly", "er",
    "net", "web", "log", "data",
)
_SEED_WORDS = (
    "the", "and", "for", "with", "login", "password", "download", "video", "news", "account", "security",
    "server", "proxy", "vpn",
)
_TAGS = (
    "<p>", "</p>\n", '<div class="item">', "</div>\n", '<a href="/news/', "<span>", "</span>", "<li>",
    "</li>\n", "<h2>", "</h2>\n",
)
_TLDS = ("com", "cn", "net", "org", "com.cn", "io", "gov.cn", "edu.cn")
_SUBDOMAINS = ("www", "api", "cdn", "img", "static", "m", "mail", "login", "")
# First octets of address blocks commonly seen for servers from Chinese gateways.
_SERVER_FIRST_OCTETS = (
    1, 14, 36, 39, 42, 58, 101, 104, 110, 112, 114, 115, 116, 119, 120, 121, 123, 140, 142, 151, 157, 172,
    180, 183, 202, 203, 210, 211, 218, 220, 221, 222, 223,
)


def make_vocab(rng: random.Random, n: int = 6000) -> list[str]:
    """``n`` pseudo-English words (sorted, so set iteration order never leaks into the output)."""
    words = set(_SEED_WORDS)
    while len(words) < n:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def make_text_corpus(rng: random.Random, size: int) -> bytes:
    """HTML-ish mixed English/Chinese UTF-8 text with Zipf-ish word choice, ``size`` bytes."""
    vocab = make_vocab(rng)
    # Cumulative weights computed once: passing plain weights to choices() would
    # re-accumulate 6000 floats per call and dominate the corpus build time.
    cum = list(accumulate(1.0 / (i + 1) for i in range(len(vocab))))
    # Chinese runs: each token is a whole Chinese word with probability 0.25, else a
    # single character; one choices() call per run over the union is much cheaper
    # than a random() + choice() pair per token.
    cn_pop = CN_WORDS + CJK
    cn_cum = list(accumulate([0.25 / len(CN_WORDS)] * len(CN_WORDS) + [0.75 / len(CJK)] * len(CJK)))
    rand, randint, choice, choices = rng.random, rng.randint, rng.choice, rng.choices
    out: list[bytes] = []
    total = 0
    while total < size:
        parts: list[str] = []
        for _ in range(200):
            r = rand()
            if r < 0.45:
                parts.append(" ".join(choices(vocab, cum_weights=cum, k=randint(3, 12))))
            elif r < 0.80:
                parts.append("".join(choices(cn_pop, cum_weights=cn_cum, k=randint(4, 30))) + "。")
            else:
                parts.append(choice(_TAGS))
        chunk = " ".join(parts).encode("utf-8")
        out.append(chunk)
        total += len(chunk)
    return b"".join(out)[:size]


class Content:
    """Shared corpora, vocabulary and domain popularity for all sessions of one capture."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.text = make_text_corpus(rng, TEXT_CORPUS_BYTES)
        self.binary = rng.randbytes(BINARY_CORPUS_BYTES)
        self.vocab = make_vocab(rng, 2000)
        self.domains: list[str] = []
        for _ in range(DOMAIN_COUNT):
            word = rng.choice(self.vocab) + rng.choice(["", str(rng.randint(1, 99))])
            sub = rng.choice(_SUBDOMAINS)
            self.domains.append((sub + "." if sub else "") + word + "." + rng.choice(_TLDS))
        self._domain_cum = list(accumulate(1.0 / (i + 1) for i in range(len(self.domains))))
        self._server_ip: dict[str, bytes] = {}

    def slice_text(self, n: int) -> bytes:
        """``n`` bytes of text from a random offset (the whole corpus if ``n`` exceeds it)."""
        if n >= len(self.text) - 1:
            return self.text[:n]
        o = self.rng.randrange(0, len(self.text) - n - 1)
        return self.text[o : o + n]

    def slice_bin(self, n: int) -> bytes:
        """``n`` bytes of binary from a random offset (the corpus repeated if ``n`` exceeds it)."""
        if n >= len(self.binary):
            return (self.binary * (n // len(self.binary) + 1))[:n]
        o = self.rng.randrange(0, len(self.binary) - n)
        return self.binary[o : o + n]

    def body_size(self) -> int:
        """Response body size: lognormal, median ~6 KB, heavy tail, capped at 8 MiB."""
        return int(min(BODY_SIZE_CAP, max(0.0, self.rng.lognormvariate(8.7, 2.0))))

    def domain(self) -> str:
        """A domain drawn by Zipf(1) popularity."""
        return self.rng.choices(self.domains, cum_weights=self._domain_cum)[0]

    def ip_for(self, domain: str) -> bytes:
        """The server address for ``domain``, assigned on first use and then stable."""
        ip = self._server_ip.get(domain)
        if ip is None:
            rng = self.rng
            first = rng.choice(_SERVER_FIRST_OCTETS)
            ip = bytes((first, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)))
            self._server_ip[domain] = ip
        return ip
