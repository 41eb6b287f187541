"""Every sentence the portal shows, in Chinese (the default) and English (``?lang=en``).

``t(key, lang, **values)``; a key without an English text falls back to Chinese. Messages for
refusals are keyed by ``Outcome.key`` / ``InputError.key``: the page shows the sentence, never
a code or a stack trace.
"""

from __future__ import annotations

from typing import Final

LANGS: Final = ("zh", "en")

TEXTS: Final[dict[str, tuple[str, str]]] = {
    # page furniture
    "title": ("上网实名登记", "Internet access registration"),
    "lang_switch": ("English", "中文"),
    "notice_head": ("为什么要登记", "Why we ask"),
    "notice": (
        "根据《互联网安全保护技术措施规定》（公安部令第82号）第十条，提供上网服务的场所须记录并留存上网用户的"
        "注册信息、上线和下线时间、使用的网络地址，并报送公安机关。我们记录：您的登记信息（手机号码，或姓名与证件"
        "号码），设备的硬件地址和网络地址，上线、下线时间，以及上网日志。记录至少保存60日，仅用于依法履行网络安全"
        "保护义务，不会用于其他目的。",
        "Under the Regulations on Technical Measures for Internet Security Protection (Ministry of Public "
        "Security Order No. 82), Article 10, a venue that offers internet access must record and keep its "
        "users' registration information, the times they go online and offline and the network addresses "
        "they use, and report them to the public security authority. We record: what you register (your "
        "mobile number, or your name and identity document), your device's hardware and network addresses, "
        "when you go online and offline, and the network log. Records are kept for at least 60 days and "
        "used only to meet these legal duties."),
    "agree": ("我已阅读并同意本页的登记说明", "I have read and accept this page's notice"),
    "sms_head": ("手机号码登记", "Register with your mobile number"),
    "phone": ("手机号码", "Mobile number"),
    "phone_hint": ("中国大陆手机号码，11位", "A mainland China mobile number, 11 digits"),
    "name": ("姓名", "Name"),
    "send_code": ("获取验证码", "Send me a code"),
    "code": ("短信验证码", "Code from the SMS"),
    "verify": ("登记并上网", "Register and go online"),
    "voucher_head": ("上网凭证", "Access voucher"),
    "voucher_hint": ("前台登记后领取的凭证号码", "The code the front desk gave you"),
    "voucher": ("凭证号码", "Voucher code"),
    "redeem": ("使用凭证上网", "Go online with the voucher"),
    "desk_hint": ("没有大陆手机号码？请携带身份证件到前台登记。", "No mainland mobile number? Register "
                  "at the front desk with an identity document."),
    "online_head": ("已连接互联网", "You are online"),
    "online": ("账号 {account} 已可以上网，剩余时间 {left}。", "Account {account} is online; "
               "{left} left."),
    "continue": ("继续访问 {url}", "Continue to {url}"),
    "logout": ("下线", "Log out"),
    "logged_out": ("您已下线。再次上网需要重新登记。", "You are logged out. Register again to go online."),
    "back": ("返回", "Back"),
    # desk
    "desk_title": ("前台登记", "Front desk registration"),
    "desk_user": ("工号", "Staff name"),
    "password": ("密码", "Password"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "signed_in_as": ("当前登录：{user}", "Signed in as {user}"),
    "g_name": ("住客姓名", "Guest's name"),
    "g_id_type": ("证件类型", "Document type"),
    "id_resident": ("居民身份证", "Resident identity card"),
    "id_passport": ("护照", "Passport"),
    "id_other": ("其他证件", "Other document"),
    "g_id_number": ("证件号码", "Document number"),
    "g_room": ("房间号或座位号", "Room or seat"),
    "g_phone": ("手机号码（可选）", "Mobile number (optional)"),
    "g_days": ("有效天数", "Days valid"),
    "register": ("登记并打印凭证", "Register and print a voucher"),
    "desk_registered": ("已登记，账号 {account}，有效至 {until}。请把凭证交给住客：",
                        "Registered as {account}, valid until {until}. Hand this voucher to the guest:"),
    "print": ("打印", "Print"),
    "next_guest": ("登记下一位", "Next guest"),
    "desk_bad_sign_in": ("工号或密码错误，或尝试次数过多，请稍后再试。",
                         "Wrong name or password, or too many tries: try again later."),
    # outcomes
    "code_sent": ("验证码已发送，{minutes}分钟内有效。", "The code is on its way; it is valid for {minutes} minutes."),
    "admitted": ("登记成功，您已可以上网。", "Registered: you are online."),
    "bad_phone": ("请输入正确的中国大陆手机号码（11位）。", "Enter a mainland China mobile number (11 digits)."),
    "bad_name": ("请输入姓名（不超过50个字）。", "Enter your name (up to 50 characters)."),
    "must_agree": ("请先阅读并勾选同意登记说明。", "Please read and accept the notice first."),
    "no_device": ("无法识别您的设备，请确认已连接本场所的无线网络后重试。",
                  "Your device could not be identified: make sure you are on this venue's network."),
    "wait_resend": ("请在{seconds}秒后再获取验证码。", "Wait {seconds} seconds before asking for a new code."),
    "too_many_sends": ("验证码发送次数过多，请一小时后再试，或到前台登记。",
                       "Too many codes sent: try again in an hour, or register at the front desk."),
    "too_many_tries": ("错误次数过多，请一小时后再试，或到前台登记。",
                       "Too many wrong tries: try again in an hour, or register at the front desk."),
    "sms_failed": ("短信发送失败，请稍后重试或到前台登记。",
                   "The SMS could not be sent: try again later, or register at the front desk."),
    "no_code": ("请先获取验证码。", "Ask for a code first."),
    "code_expired": ("验证码已过期，请重新获取。", "The code has expired: ask for a new one."),
    "code_used_up": ("验证码错误次数过多，已失效，请重新获取。",
                     "Too many wrong tries for this code: ask for a new one."),
    "wrong_code": ("验证码错误，还可以尝试{tries}次。", "Wrong code; {tries} tries left."),
    "bad_voucher": ("凭证号码无效，请核对后重新输入。", "That voucher code is not valid: check it and try again."),
    "voucher_expired": ("凭证已过期，请到前台重新登记。", "The voucher has expired: see the front desk."),
    "too_many_devices": ("该账号登记的设备数量已达上限。", "This account has reached its number of devices."),
    "admission_failed": ("暂时无法开通上网，请联系前台。", "Access could not be opened: please see the front desk."),
    "method_off": ("本场所未开通此登记方式。", "This venue does not offer that way of registering."),
    "not_admitted": ("您当前未上网。", "You are not online."),
    "bad_id_type": ("请选择证件类型。", "Choose a document type."),
    "bad_id_format": ("居民身份证号码应为18位（最后一位可以是X）。",
                      "A resident ID number has 18 characters (the last may be X)."),
    "bad_id_check": ("居民身份证号码校验位不正确，请核对。",
                     "The resident ID number's check digit is wrong: check the number."),
    "bad_id_birth": ("居民身份证号码中的出生日期不正确。", "The date of birth in the resident ID number is wrong."),
    "bad_passport": ("护照号码应为5至20位字母或数字。", "A passport number has 5 to 20 letters or digits."),
    "bad_other_doc": ("证件号码应为4至40位字母、数字、“-”或“/”。",
                      "A document number has 4 to 40 letters, digits, - or /."),
    "bad_room": ("房间号或座位号不超过40个字。", "A room or seat has at most 40 characters."),
    "bad_days": ("有效天数应为1至{max}天。", "Days valid: 1 to {max}."),
    "bad_request": ("请求无效，请返回重试。", "That request was not valid: go back and try again."),
}


def t(key: str, lang: str, **values: object) -> str:
    zh, en = TEXTS.get(key, TEXTS["bad_request"])
    text = en if lang == "en" and en else zh
    return text.format(**values) if values else text
