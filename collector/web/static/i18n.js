// UI text in Chinese (the default) and English; `t(key, vars)` looks a key up in the chosen one.
const TEXT = {
  zh: {
    "u.a.ruleset": "规则版本", "u.a.spool": "本地缓存", "u.a.spoolv": "{n} 条（{mb} MB）", "u.a.quarantined": "，{n} 条被拒待处理", "u.a.lag": "上传延迟（秒）",
    "u.a.drops": "丢包 / 丢弃记录", "u.retention": "中心日志留存 {n} 天（要求不少于 180 天）：{verdict}",
    "nav.rulesets": "规则库", "r.title": "关键词规则库", "r.file": "已签名的规则包", "r.publish": "发布",
    "r.published": "已发布 {name} 第 {version} 版", "r.refused": "发布被拒绝", "r.history": "已发布版本", "r.agents": "各探针运行的版本",
    "r.version": "版本", "r.name": "名称", "r.by": "发布人", "r.when": "时间", "r.etag": "摘要", "r.current": "当前",
    "r.none": "尚未发布规则包", "r.unknown": "未知版本", "r.never": "从未获取", "r.uptodate": "最新", "r.behind": "落后于当前版本",
    "nav.compliance": "合规检查", "k.title": "单位合规检查", "k.unit": "{unit} 合规报告", "k.count": "{n} 个单位不符合要求",
    "k.result": "结论", "k.problems": "问题", "k.yes": "符合", "k.no": "不符合", "k.measure": "措施", "k.evidence": "证据",
    "k.latest": "最近记录", "k.records": "窗口内 {n} 条", "k.gaps": "{n} 天无记录（自 {first}）", "k.retention": "中心留存 {n} 天",
    "k.alert": "最近告警", "k.uploaded": "备案更新", "k.allok": "全部措施符合要求", "k.notok": "存在不符合项",
    "k.print": "打印", "k.html": "打印版（HTML）", "k.pdf": "导出 PDF",
    "k.m.login_records": "登录/注销记录", "k.m.nat_mapping": "地址转换（NAT）记录", "k.m.registration": "备案信息",
    "k.m.keyword_filtering": "关键词过滤与阻断", "k.m.retention": "日志留存（≥60 天 / 6 个月）", "k.m.upload": "上传至公安机关",
    "k.m.maintenance_log": "系统维护日志",
    "nav.units": "单位备案", "nav.audit": "审计日志", "nav.users": "用户管理",
    "u.title": "单位备案信息", "u.show": "显示证件号码（将记入审计日志）", "u.hide": "隐藏证件号码", "u.noprofile": "尚未上报备案信息",
    "u.officers": "安全管理人员", "u.agents": "探针", "u.o.name": "姓名", "u.o.cert": "证件号码", "u.o.phone": "电话",
    "u.a.agent": "探针", "u.f.name": "单位名称", "u.f.legal_representative": "法定代表人", "u.f.address": "地址",
    "u.f.postal_code": "邮政编码", "u.f.phone": "联系电话", "u.f.industry": "行业", "u.f.isp": "接入服务商",
    "u.f.access_method": "接入方式", "u.f.ip_ranges": "IP 地址段", "u.f.egress_ips": "出口 IP", "u.f.dns_servers": "DNS 服务器",
    "u.f.mail_servers": "邮件服务器", "u.f.services": "服务", "u.f.security_measures": "安全措施",
    "u.users": "用户管理", "u.role": "角色", "u.action": "操作", "u.disable": "停用", "u.disabled": "已停用", "u.enabled": "启用",
    "u.add": "新增用户", "u.made": "已创建 {name}，初始密码（仅显示一次）：{password}",
    "a.title": "审计日志", "a.ok": "哈希链校验通过：{n} 条；锚点 {anchor}", "a.bad": "哈希链校验失败：第 {line} 行，{problem}",
    "a.seq": "序号", "a.ts": "时间（UTC）", "a.actor": "操作人", "a.action": "操作", "a.target": "对象", "a.result": "结果",
    "nav.dashboard": "总览", "d.title": "总览", "d.units": "单位", "d.unit": "单位编号", "d.name": "单位名称",
    "d.status": "状态", "d.last": "最近上传", "d.online": "在线", "d.silent": "离线", "d.revoked": "已吊销",
    "d.hourly": "每小时入库记录数（近 24 小时）", "d.alerts": "实时告警", "d.noalerts": "暂无新告警",
    "d.live": "实时连接正常", "d.reconnecting": "实时连接中断，正在重连…", "d.chart": "近 24 小时共 {n} 条记录",
    "skip": "跳到正文", "nav.traceback": "溯源", "nav.search": "记录查询", "logout": "退出",
    "lang.other": "English", "menu": "主菜单",
    "login.title": "登录", "login.name": "用户名", "login.password": "密码", "login.submit": "登录",
    "login.failed": "用户名或密码错误", "login.as": "{name}（{role}）",
    "role.operator": "值班民警", "role.auditor": "审计员", "role.admin": "管理员",
    "tb.title": "溯源：公网地址、端口、时间 → 上网人员", "tb.ip": "公网 IP", "tb.port": "端口",
    "tb.time": "时间", "tb.proto": "协议", "tb.any": "任意", "tb.submit": "查询",
    "tb.none": "未找到该时间该地址端口的记录", "tb.inside": "内网地址", "tb.via": "依据",
    "tb.account": "账号", "tb.mac": "MAC 地址", "tb.calling": "主叫号码", "tb.source": "身份来源",
    "tb.nat": "NAT 映射", "tb.person": "上网人员", "tb.records": "该连接的全部记录 ({n})",
    "tb.noid": "该时间无登录记录", "tb.connection": "查看连接",
    "s.title": "记录查询", "s.type": "类型", "s.all": "全部", "s.from": "开始时间", "s.to": "结束时间",
    "s.ip": "IP 地址", "s.account": "账号", "s.text": "主机名 / URI / 查询内容", "s.submit": "查询",
    "s.csv": "导出 CSV", "s.next": "下一页", "s.first": "第一页", "s.count": "本页 {n} 条",
    "s.none": "没有符合条件的记录",
    "c.title": "连接 {uid} 的全部记录",
    "col.time": "时间", "col.type": "类型", "col.src": "源地址", "col.dst": "目的地址", "col.account": "账号",
    "col.detail": "内容", "col.agent": "探针",
    "err.network": "无法连接采集服务器", "err.forbidden": "无权执行此操作", "loading": "正在查询…",
  },
  en: {
    "u.a.ruleset": "Ruleset", "u.a.spool": "Local spool", "u.a.spoolv": "{n} records ({mb} MB)", "u.a.quarantined": ", {n} refused, held",
    "u.a.lag": "Upload lag (s)", "u.a.drops": "Kernel drops / records dropped",
    "u.retention": "The center keeps logs {n} days (at least 180 required): {verdict}",
    "nav.rulesets": "Rulesets", "r.title": "Keyword rulesets", "r.file": "Signed bundle", "r.publish": "Publish",
    "r.published": "Published {name} version {version}", "r.refused": "Refused", "r.history": "Published versions",
    "r.agents": "The version each agent runs", "r.version": "Version", "r.name": "Name", "r.by": "Published by",
    "r.when": "When", "r.etag": "Digest", "r.current": "current", "r.none": "No bundle published yet",
    "r.unknown": "unknown version", "r.never": "never fetched", "r.uptodate": "up to date", "r.behind": "behind the current one",
    "nav.compliance": "Compliance", "k.title": "Unit compliance", "k.unit": "Compliance report: {unit}",
    "k.count": "{n} unit(s) out of compliance", "k.result": "Result", "k.problems": "Problems", "k.yes": "compliant",
    "k.no": "not compliant", "k.measure": "Measure", "k.evidence": "Evidence", "k.latest": "latest record",
    "k.records": "{n} in the window", "k.gaps": "{n} day(s) without records (from {first})",
    "k.retention": "center keeps {n} days", "k.alert": "latest alert", "k.uploaded": "profile updated",
    "k.allok": "Every measure holds", "k.notok": "Some measures do not hold", "k.print": "Print",
    "k.html": "Printable page (HTML)", "k.pdf": "Export PDF",
    "k.m.login_records": "Login/logout records", "k.m.nat_mapping": "NAT mapping", "k.m.registration": "Registration",
    "k.m.keyword_filtering": "Keyword filtering and stopping", "k.m.retention": "Backup ≥ 60 days / retention 6 months",
    "k.m.upload": "Upload to the center", "k.m.maintenance_log": "System maintenance log",
    "nav.units": "Units", "nav.audit": "Audit log", "nav.users": "Users",
    "u.title": "Unit registration profiles", "u.show": "Show ID numbers (audited)", "u.hide": "Hide ID numbers",
    "u.noprofile": "No registration profile uploaded yet", "u.officers": "Security officers", "u.agents": "Agents",
    "u.o.name": "Name", "u.o.cert": "Certificate no.", "u.o.phone": "Phone", "u.a.agent": "Agent",
    "u.f.name": "Unit name", "u.f.legal_representative": "Legal representative", "u.f.address": "Address",
    "u.f.postal_code": "Postal code", "u.f.phone": "Phone", "u.f.industry": "Industry", "u.f.isp": "ISP",
    "u.f.access_method": "Access method", "u.f.ip_ranges": "IP ranges", "u.f.egress_ips": "Egress IPs",
    "u.f.dns_servers": "DNS servers", "u.f.mail_servers": "Mail servers", "u.f.services": "Services",
    "u.f.security_measures": "Security measures",
    "u.users": "Users", "u.role": "Role", "u.action": "Action", "u.disable": "Disable", "u.disabled": "disabled",
    "u.enabled": "enabled", "u.add": "Add user", "u.made": "Created {name}; first password (shown once): {password}",
    "a.title": "Audit log", "a.ok": "Hash chain verified: {n} entries; anchor {anchor}",
    "a.bad": "Hash chain broken at line {line}: {problem}", "a.seq": "No.", "a.ts": "Time (UTC)", "a.actor": "Who",
    "a.action": "Action", "a.target": "Target", "a.result": "Result",
    "nav.dashboard": "Dashboard", "d.title": "Dashboard", "d.units": "Units", "d.unit": "Unit", "d.name": "Name",
    "d.status": "Status", "d.last": "Last upload", "d.online": "on line", "d.silent": "off line", "d.revoked": "revoked",
    "d.hourly": "Records stored per hour (last 24 hours)", "d.alerts": "Live alerts", "d.noalerts": "No new alerts",
    "d.live": "Live feed connected", "d.reconnecting": "Live feed interrupted, reconnecting…",
    "d.chart": "{n} records in the last 24 hours",
    "skip": "Skip to content", "nav.traceback": "Traceback", "nav.search": "Search", "logout": "Log out",
    "lang.other": "中文", "menu": "Main menu",
    "login.title": "Log in", "login.name": "Name", "login.password": "Password", "login.submit": "Log in",
    "login.failed": "Wrong name or password", "login.as": "{name} ({role})",
    "role.operator": "operator", "role.auditor": "auditor", "role.admin": "admin",
    "tb.title": "Traceback: public address, port, time → the person", "tb.ip": "Public IP", "tb.port": "Port",
    "tb.time": "Time", "tb.proto": "Protocol", "tb.any": "any", "tb.submit": "Trace",
    "tb.none": "Nothing found for that address and port at that time", "tb.inside": "Inside address",
    "tb.via": "Found via", "tb.account": "Account", "tb.mac": "MAC address", "tb.calling": "Calling number",
    "tb.source": "Identity source", "tb.nat": "NAT mapping", "tb.person": "The person",
    "tb.records": "Everything this connection did ({n})", "tb.noid": "No login covers that time",
    "tb.connection": "Open connection",
    "s.title": "Search records", "s.type": "Type", "s.all": "all", "s.from": "From", "s.to": "To",
    "s.ip": "IP address", "s.account": "Account", "s.text": "Host / URI / query text", "s.submit": "Search",
    "s.csv": "Export CSV", "s.next": "Next page", "s.first": "First page", "s.count": "{n} on this page",
    "s.none": "No records match",
    "c.title": "Every record of connection {uid}",
    "col.time": "Time", "col.type": "Type", "col.src": "Source", "col.dst": "Destination", "col.account": "Account",
    "col.detail": "Content", "col.agent": "Agent",
    "err.network": "The collector cannot be reached", "err.forbidden": "Not allowed", "loading": "Searching…",
  },
};

let lang = localStorage.getItem("edgeaudit.lang") === "en" ? "en" : "zh";

export function getLang() { return lang; }

export function setLang(next) {
  lang = next === "en" ? "en" : "zh";
  localStorage.setItem("edgeaudit.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

export function t(key, vars = {}) {
  const text = TEXT[lang][key] ?? TEXT.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
}

// Translate the static parts of the page (elements carrying data-i18n).
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  const nav = document.getElementById("nav");
  if (nav) nav.setAttribute("aria-label", t("menu"));
}
