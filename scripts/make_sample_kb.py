"""Generate the bundled sample knowledge base in examples/sample_kb/ and examples/sample_qa.jsonl.

Northwind Robotics is a fictional company; every fact below is invented. The output is deterministic:
fixed dates, fixed zip timestamps and a fixed MIME boundary, so re-running gives identical files.

    python scripts/make_sample_kb.py [--out examples/sample_kb] [--check]

``--check`` also loads every file with kb_assistant.loaders and verifies each QA evidence snippet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import re
import sys
import zipfile
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

logger = logging.getLogger("make_sample_kb")

FIXED = dt.datetime(2025, 3, 1, 9, 0, 0)
ZIP_DATE = (2025, 3, 1, 9, 0, 0)

# --------------------------------------------------------------------------------------------------
# Content. Every fact is invented; QA below points at these sentences.
# --------------------------------------------------------------------------------------------------

PDF_SECTIONS: list[tuple[str, list[str]]] = [
    ("1. VPN Access", [
        "All remote access to the Northwind Robotics internal network goes through the corporate VPN. "
        "The VPN server is vpn.northwind.example, port 1194 (OpenVPN over UDP). Install the Northwind VPN "
        "client from the Self-Service portal before you travel; it is pre-installed on every company laptop.",
        "VPN profiles are issued by the IT Service Desk. A new VPN profile is normally ready within one "
        "working day of the request. Each employee may register at most 2 devices for VPN access.",
        "VPN sessions are disconnected automatically after 10 hours. To reconnect, sign in again with your "
        "password and a one-time code from the Northwind Authenticator app.",
        "Split tunnelling is disabled: while the VPN is connected, all traffic is routed through the "
        "Hamburg data centre. If the client reports error 809, check that your home router does not block "
        "UDP port 1194, then contact the IT Service Desk at extension 4300 or helpdesk@northwind.example.",
    ]),
    ("2. Password Policy", [
        "Passwords must be at least 14 characters long and must be changed every 180 days. A new password "
        "may not repeat any of your last 10 passwords and may not contain your user name.",
        "After 5 failed sign-in attempts the account is locked for 30 minutes. If you need access sooner, "
        "the IT Service Desk can unlock the account after verifying your identity by video call.",
        "Multi-factor authentication with the Northwind Authenticator app is mandatory for e-mail, the VPN "
        "and the HR portal. Hardware security keys are available on request for employees who travel to "
        "regions where phones may be inspected.",
        "Never share your password, not even with IT staff: the Service Desk will never ask for it. Team "
        "credentials that must be shared are stored in KeyVault, the company password manager.",
    ]),
    ("3. Laptops and Lost Devices", [
        "Every employee receives a standard laptop on the first working day: a 14-inch ThinkPad with 32 GB "
        "of memory. Laptops are replaced every 4 years; engineers in the robotics software team may request "
        "a workstation instead.",
        "When you leave the company, return your laptop, charger and badge to the IT Service Desk in Room "
        "B-112 within 5 working days of your last day. Equipment that is not returned is deducted from the "
        "final salary at its current book value.",
        "Lost or stolen laptops must be reported within 24 hours by calling the security hotline at "
        "extension 4400. All laptop disks are encrypted with BitLocker, and the recovery keys are held by "
        "the IT security team.",
        "Private USB storage devices are blocked on company laptops. Use the company file share or "
        "Northwind Drive to exchange files with customers.",
    ]),
    ("4. Software and Support Hours", [
        "The IT Service Desk is open Monday to Friday from 08:00 to 18:00 CET. Outside these hours, "
        "priority 1 incidents (for example a complete outage of e-mail or the VPN) can be reported to the "
        "on-call engineer at +49 40 5550 1999.",
        "Software from the Self-Service catalogue installs without approval. Any other software must be "
        "requested through a ticket and approved by your manager; licence costs are charged to your team's "
        "cost centre.",
        "Operating system updates are installed automatically every second Tuesday of the month. Laptops "
        "that have not received updates for 30 days lose VPN access until they are patched.",
    ]),
]

DOCX_SECTIONS: list[tuple[str, list[str | list[list[str]]]]] = [
    ("1. Annual Leave", [
        "This policy applies to all employees of Northwind Robotics GmbH in Germany.",
        "Full-time employees receive 25 days of annual leave per calendar year. Part-time employees receive "
        "leave pro rata to their contracted working days.",
        "Leave requests must be submitted in the HR portal at least 10 working days in advance when the "
        "absence is longer than 3 days. Shorter absences need only your manager's approval in the portal.",
        "Up to 5 unused days may be carried over to the next year. Carried-over days expire on 31 March of "
        "the following year and are not paid out.",
    ]),
    ("2. Parental Leave", [
        "Parental leave is 16 weeks at full pay for every parent, regardless of gender, for birth and "
        "adoption alike. The leave can be taken in up to 2 blocks within 12 months of the birth or "
        "adoption.",
        "Please notify the People Team at least 8 weeks before the planned start of parental leave.",
    ]),
    ("3. Sick Leave", [
        "Report sickness to your manager before 10:00 on the first day of absence.",
        "A doctor's certificate is required for absences longer than 3 consecutive calendar days. Sick pay "
        "continues at 100% of salary for up to 6 weeks per illness.",
    ]),
    ("4. Other Paid Leave", [
        "In addition to annual leave, the following paid leave is granted on request:",
        [
            ["Leave type", "Paid days", "Conditions"],
            ["Own wedding", "3", "Within 3 months of the wedding"],
            ["Moving house", "1", "Once per calendar year"],
            ["Bereavement (close family)", "5", "Parents, partner, children, siblings"],
            ["Volunteering", "2", "For a registered charity, approved by the manager"],
        ],
        "Unused special leave cannot be carried over or paid out.",
    ]),
]

PPTX_SLIDES: list[tuple[str, list[str], str]] = [
    ("Northwind Robotics Product Overview 2025", [
        "Autonomous mobile robots for warehouses and hospitals",
        "Headquarters in Hamburg, offices in Berlin and Shanghai",
        "More than 1,200 robots in operation at 85 customer sites",
    ], "Opening slide. Northwind Robotics was founded in 2016."),
    ("NW-200 Picker", [
        "Autonomous picking robot for warehouse shelves",
        "Payload: 12 kg per pick",
        "Battery runtime: 8 hours; full charge in 90 minutes",
        "Picks up to 450 items per hour",
    ], "The NW-200 was launched in March 2023."),
    ("NW-500 Courier", [
        "Delivery robot for hospitals and campuses",
        "Maximum speed: 1.8 m/s",
        "4 lockable compartments, each opened with a staff badge",
        "Uses lifts automatically through the Northwind Lift Bridge",
    ], "The NW-500 is used by 40 hospitals in Europe."),
    ("Northwind Fleet Console", [
        "Fleet management in the cloud or on premises",
        "Manages up to 500 robots per site",
        "Firmware updates over the air",
    ], ""),
    ("Warranty and Service", [
        "Standard warranty: 24 months on parts and labour",
        "Extended warranty available for up to 5 years",
        "Spare battery part number: NW-BAT-48",
    ], "Service contracts are sold per robot and per year."),
]

XLSX_SHEETS: dict[str, list[list[str | int]]] = {
    "Offices": [
        ["Office", "Address", "Phone", "Reception hours", "Employees"],
        ["Hamburg (headquarters)", "Speicherstadt 7, 20457 Hamburg, Germany", "+49 40 5550 1000",
         "08:00-18:00", 310],
        ["Berlin", "Friedrichstrasse 120, 10117 Berlin, Germany", "+49 30 5550 3000", "08:30-17:30", 120],
        ["Shanghai", "88 Hongqiao Road, Xuhui District, Shanghai, China", "+86 21 5550 8800",
         "09:00-18:00", 95],
    ],
    "Support SLA": [
        ["Priority", "Description", "First response", "Resolution target", "Channel"],
        ["P1", "Critical: robots at a customer site are down", "30 minutes", "4 hours", "Phone hotline"],
        ["P2", "High: degraded operation, workaround exists", "2 hours", "1 business day",
         "Phone or ticket"],
        ["P3", "Normal: single robot or console issue", "8 business hours", "5 business days", "Ticket"],
        ["P4", "Low: questions and feature requests", "2 business days", "20 business days", "Ticket"],
    ],
}

HTML_FAQ = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Northwind Robotics Product FAQ</title>
<style>body { font-family: sans-serif; max-width: 50em; margin: auto; }</style>
<script>window.analytics = "disabled in the sample";</script>
</head>
<body>
<header><a href="/">Northwind Robotics</a></header>
<nav><a href="/products">Products</a> | <a href="/support">Support</a> | <a href="/careers">Careers</a></nav>
<main>
<h1>Product FAQ</h1>
<p>Answers to the questions our customers ask most often about the NW-200 Picker, the NW-500 Courier
and the Northwind Fleet Console.</p>

<h2>How do I update the firmware on my NW-200?</h2>
<p>Open the Northwind Fleet Console, go to <b>Settings &gt; Firmware</b> and click <b>Update all</b>.
Robots install firmware updates only while they are docked and have at least 40% battery.
An update takes about 15 minutes per robot.</p>

<h2>Can the NW-500 Courier operate outdoors?</h2>
<p>Only on covered walkways. The NW-500 is rated IP54 and operates at temperatures between -5 &deg;C
and 40 &deg;C. It is not designed for rain or snow.</p>

<h2>How long does the NW-200 battery last?</h2>
<p>A fully charged NW-200 runs for 8 hours. Batteries keep at least 80% of their capacity for
1,500 charge cycles.</p>

<h2>How do I order spare batteries?</h2>
<p>Order part number NW-BAT-48 in the customer portal at shop.northwind.example. Delivery takes up to
5 business days within the EU.</p>

<h2>How do I contact customer support?</h2>
<p>Write to support@northwind.example or call +49 40 5550 2000, Monday to Friday from 07:00 to 19:00 CET.
For critical incidents (priority P1) the phone hotline answers around the clock.</p>

<h2>Does the Fleet Console work without internet access?</h2>
<p>Yes. The on-premises edition of the Fleet Console runs on a local server and needs no internet
connection; firmware packages are then imported from a USB drive.</p>
</main>
<aside>Related: <a href="/blog">Read our blog</a></aside>
<footer>&copy; 2025 Northwind Robotics GmbH. All rights reserved.</footer>
</body>
</html>
"""

MD_IT_FAQ_ZH = """# 北风机器人上海办公室 IT 常见问题

本文档由上海 IT 服务台维护，回答员工最常问的问题。如有其他问题，请联系 IT 服务台：分机 8000，
邮箱 it-sh@northwind.example，服务时间为周一至周五 9:00 至 18:00。

## 打印机设置

公司打印服务器地址为 print.northwind.example。Windows 电脑请在"设置 > 打印机"中添加网络打印机
\\\\print.northwind.example\\Office-3F，驱动程序会自动安装。

彩色打印需要部门经理在打印系统中审批，黑白打印不受限制。打印作业需要在打印机上刷工牌后才会输出，
未取走的打印作业会在 24 小时后自动删除。

打印机卡纸或缺少碳粉时，请拨打分机 8000 报修，不要自行拆开打印机。

## Wi-Fi 网络与密码策略

员工 Wi-Fi 的网络名称为 NW-Staff，使用域账号和域密码登录，不需要单独的 Wi-Fi 密码。

访客 Wi-Fi 的网络名称为 NW-Guest。访客 Wi-Fi 密码每周一上午 8 点自动更换，访客可以在前台领取密码。
访客网络只能访问互联网，不能访问公司内网。

个人手机可以连接 NW-Staff，但必须先在公司门户中注册设备，每位员工最多注册 3 台个人设备。

## 电脑故障与报修

电脑无法开机、屏幕损坏或系统故障时，请在 IT 服务门户提交工单，并注明资产编号（贴在电脑底部）。
一般硬件故障会在 2 个工作日内修复；维修期间，IT 服务台可以提供备用电脑。

## 会议室设备

所有会议室都配有 ClickShare 无线投屏器。把 ClickShare 按钮插入电脑的 USB 接口，按下按钮即可投屏。
视频会议请使用 Microsoft Teams，大会议室"黄浦江"最多可容纳 20 人。
"""

TXT_HR_ZH = """北风机器人（上海）有限公司 员工人事制度摘要

本制度适用于北风机器人上海办公室的全体正式员工，自 2025 年 1 月 1 日起执行。

一、年假

1. 入职满一年的正式员工每年享有 15 天带薪年假；在本公司工作满 10 年的员工每年享有 20 天带薪年假。
2. 年假须至少提前 5 个工作日在 HR 系统中提交申请，并由直属经理批准。
3. 当年未休完的年假最多可顺延 5 天，顺延的年假须在次年 3 月 31 日前休完，逾期作废。

二、报销流程

1. 报销单须在消费后30天内提交，逾期的报销单财务部不予受理。
2. 报销时须附上合规发票，发票抬头必须为"北风机器人（上海）有限公司"。
3. 单笔超过 5000 元的报销需要财务总监审批；5000 元及以下由部门经理审批即可。
4. 差旅住宿标准：北京、上海、广州、深圳每晚不超过 600 元，其他城市每晚不超过 400 元。
5. 报销款在审批通过后 10 个工作日内打入员工的工资卡。

三、加班

1. 工作日加班按 1.5 倍工资计算。
2. 休息日加班优先安排调休；无法调休的，按 2 倍工资支付。
3. 法定节假日加班按 3 倍工资支付。

四、病假

1. 员工请病假须在当天上午 10 点前通知直属经理。
2. 连续病假超过 2 天的，须提供二级以上医院出具的病假证明。

五、试用期

新员工试用期为 3 个月。试用期结束前两周，直属经理会与员工进行转正面谈。

如对本制度有疑问，请联系上海人事部：分机 8100，邮箱 hr-sh@northwind.example。
"""

EML = {
    "Subject": "Berlin office moves to Friedrichstrasse 120 on 12 May 2025",
    "From": "Northwind Facilities Team <facilities@northwind.example>",
    "To": "All Berlin staff <berlin-all@northwind.example>",
    "Date": "Mon, 14 Apr 2025 09:00:00 +0200",
    "Message-ID": "<office-move-2025@northwind.example>",
    "body": """Dear colleagues,

the Berlin office is moving from Torstrasse 44 to Friedrichstrasse 120, 10117 Berlin.

The last working day in the old office is Friday, 9 May 2025. The new office opens on Monday,
12 May 2025. Please work from home on the days in between.

Moving boxes will be delivered to every team on 5 May. Please pack your desk and label every box
with your name and team by 16:00 on 9 May. Laptops travel with you and must not be packed.

The new building has 40 parking spaces in the underground garage. Parking spaces are reserved in the
Facilities portal; bicycle parking is free and needs no reservation.

Your current badge will open the new building from 12 May, so you do not need a new badge.

The floor plan and a moving checklist are attached.

Best regards,
Northwind Facilities Team
""",
    "attachments": {
        "floor_plan_friedrichstrasse.pdf": b"%PDF-1.4\n% placeholder floor plan for the sample\n%%EOF\n",
        "moving_checklist.txt": b"1. Pack your desk by 9 May 16:00\n2. Label every box\n"
                                b"3. Keep your laptop\n",
    },
}


def _qa(question: str, lang: str, source: str, page: int | None, evidence: str,
        keywords: list[str]) -> dict[str, object]:
    return {"question": question, "lang": lang, "source": source, "page": page, "evidence": evidence,
            "answer_keywords": keywords, "answerable": True}


QA: list[dict[str, object]] = [
    _qa("What is the address and port of the company VPN server?", "en", "it_handbook.pdf", 1,
        "The VPN server is vpn.northwind.example, port 1194", ["vpn.northwind.example", "1194"]),
    _qa("After how many hours is a VPN session disconnected?", "en", "it_handbook.pdf", 1,
        "VPN sessions are disconnected automatically after 10 hours", ["10 hours"]),
    _qa("How long must a password be and how often must it be changed?", "en", "it_handbook.pdf", 2,
        "Passwords must be at least 14 characters long and must be changed every 180 days",
        ["14", "180"]),
    _qa("What happens after several failed sign-in attempts?", "en", "it_handbook.pdf", 2,
        "After 5 failed sign-in attempts the account is locked for 30 minutes", ["5", "30 minutes"]),
    _qa("Where and when do I return my laptop when I leave the company?", "en", "it_handbook.pdf", 3,
        "return your laptop, charger and badge to the IT Service Desk in Room B-112 within 5 working days",
        ["B-112", "5 working days"]),
    _qa("How quickly must a stolen laptop be reported, and to which number?", "en", "it_handbook.pdf", 3,
        "Lost or stolen laptops must be reported within 24 hours by calling the security hotline at "
        "extension 4400", ["24 hours", "4400"]),
    _qa("What are the opening hours of the IT Service Desk?", "en", "it_handbook.pdf", 4,
        "The IT Service Desk is open Monday to Friday from 08:00 to 18:00 CET", ["08:00", "18:00"]),
    _qa("How many days of annual leave do full-time employees get?", "en", "hr_leave_policy.docx", None,
        "Full-time employees receive 25 days of annual leave per calendar year", ["25"]),
    _qa("How long is parental leave?", "en", "hr_leave_policy.docx", None,
        "Parental leave is 16 weeks at full pay for every parent", ["16 weeks"]),
    _qa("When is a doctor's certificate required?", "en", "hr_leave_policy.docx", None,
        "A doctor's certificate is required for absences longer than 3 consecutive calendar days",
        ["3"]),
    _qa("How many paid days off do I get when I move house?", "en", "hr_leave_policy.docx", None,
        "Leave type: Moving house; Paid days: 1", ["1"]),
    _qa("What is the payload of the NW-200 Picker?", "en", "product_overview.pptx", 2,
        "Payload: 12 kg per pick", ["12 kg"]),
    _qa("What is the maximum speed of the NW-500 Courier?", "en", "product_overview.pptx", 3,
        "Maximum speed: 1.8 m/s", ["1.8"]),
    _qa("How long is the standard warranty on Northwind robots?", "en", "product_overview.pptx", 5,
        "Standard warranty: 24 months on parts and labour", ["24 months"]),
    _qa("What is the first response time for a P1 support ticket?", "en",
        "offices_and_support_sla.xlsx", None,
        "Priority: P1; Description: Critical: robots at a customer site are down; First response: 30 minutes",
        ["30 minutes"]),
    _qa("What is the phone number of the Shanghai office?", "en", "offices_and_support_sla.xlsx", None,
        "Phone: +86 21 5550 8800", ["+86 21 5550 8800"]),
    _qa("How do I update the firmware on an NW-200?", "en", "product_faq.html", None,
        "go to Settings > Firmware and click Update all", ["Settings", "Firmware"]),
    _qa("What is the part number of the spare battery?", "en", "product_faq.html", None,
        "Order part number NW-BAT-48", ["NW-BAT-48"]),
    _qa("When does the new Berlin office open?", "en", "office_move_announcement.eml", None,
        "The new office opens on Monday, 12 May 2025", ["12 May"]),
    _qa("How many parking spaces does the new Berlin building have?", "en",
        "office_move_announcement.eml", None,
        "The new building has 40 parking spaces in the underground garage", ["40"]),
    _qa("打印服务器的地址是什么？", "zh", "it_faq_zh.md", None,
        "公司打印服务器地址为 print.northwind.example", ["print.northwind.example"]),
    _qa("彩色打印需要谁审批？", "zh", "it_faq_zh.md", None,
        "彩色打印需要部门经理在打印系统中审批", ["部门经理"]),
    _qa("访客 Wi-Fi 密码多久更换一次？", "zh", "it_faq_zh.md", None,
        "访客 Wi-Fi 密码每周一上午 8 点自动更换", ["每周一"]),
    _qa("上海 IT 服务台的电话分机是多少？", "zh", "it_faq_zh.md", None,
        "请联系 IT 服务台：分机 8000", ["8000"]),
    _qa("入职满一年的员工有几天年假？", "zh", "hr_policy_zh.txt", None,
        "入职满一年的正式员工每年享有 15 天带薪年假", ["15"]),
    _qa("报销单必须在消费后多少天内提交？", "zh", "hr_policy_zh.txt", None,
        "报销单须在消费后30天内提交", ["30"]),
    _qa("超过多少金额的报销需要财务总监审批？", "zh", "hr_policy_zh.txt", None,
        "单笔超过 5000 元的报销需要财务总监审批", ["5000"]),
    _qa("在上海出差住宿每晚的标准是多少？", "zh", "hr_policy_zh.txt", None,
        "北京、上海、广州、深圳每晚不超过 600 元", ["600"]),
    _qa("工作日加班工资怎么计算？", "zh", "hr_policy_zh.txt", None,
        "工作日加班按 1.5 倍工资计算", ["1.5"]),
    {"question": "How many stock options do new employees receive?", "lang": "en", "answerable": False},
    {"question": "What is on the cafeteria menu on Fridays?", "lang": "en", "answerable": False},
    {"question": "Which health insurance provider does the company use?", "lang": "en", "answerable": False},
    {"question": "What is the company's dress code for customer visits?", "lang": "en", "answerable": False},
    {"question": "公司的股票期权如何行权？", "lang": "zh", "answerable": False},
    {"question": "员工食堂的午餐多少钱？", "lang": "zh", "answerable": False},
]


def write_pdf(path: Path) -> None:
    from fpdf import FPDF

    class HandbookPDF(FPDF):
        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", size=8)
            self.cell(0, 5, f"Northwind Robotics IT Handbook - page {self.page_no()}", align="C")

    pdf = HandbookPDF()
    pdf.set_creation_date(FIXED.replace(tzinfo=dt.UTC))
    pdf.set_title("Northwind Robotics IT Handbook")
    pdf.set_author("Northwind Robotics IT Service Desk")
    pdf.set_margins(20, 20, 20)
    for heading, paragraphs in PDF_SECTIONS:
        pdf.add_page()
        pdf.start_section(heading)
        pdf.set_font("Helvetica", style="B", size=16)
        pdf.multi_cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font("Helvetica", size=11)
        for para in paragraphs:
            pdf.multi_cell(0, 6, para, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))


def write_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = "Northwind Robotics Leave Policy"
    props.author = "Northwind Robotics People Team"
    props.last_modified_by = "Northwind Robotics People Team"
    props.created = props.modified = props.last_printed = FIXED
    props.revision = 1
    document.add_heading("Northwind Robotics Leave Policy", level=0)
    for heading, blocks in DOCX_SECTIONS:
        document.add_heading(heading, level=1)
        for block in blocks:
            if isinstance(block, list):
                table = document.add_table(rows=len(block), cols=len(block[0]))
                table.style = "Table Grid"
                for r, row in enumerate(block):
                    for c, cell in enumerate(row):
                        table.cell(r, c).text = cell
            else:
                document.add_paragraph(block)
    document.save(str(path))
    normalize_zip(path)


def write_pptx(path: Path) -> None:
    from pptx import Presentation

    prs = Presentation()
    props = prs.core_properties
    props.title = "Northwind Robotics Product Overview 2025"
    props.author = "Northwind Robotics Product Marketing"
    props.last_modified_by = props.author
    props.created = props.modified = FIXED
    props.revision = 1
    for title, bullets, notes in PPTX_SLIDES:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = title
        frame = slide.placeholders[1].text_frame
        frame.text = bullets[0]
        for bullet in bullets[1:]:
            frame.add_paragraph().text = bullet
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    prs.save(str(path))
    normalize_zip(path)


def write_xlsx(path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    wb.properties.creator = "Northwind Robotics Facilities"
    wb.properties.created = wb.properties.modified = FIXED
    for name, rows in XLSX_SHEETS.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for column in ws.columns:
            width = max(len(str(c.value or "")) for c in column)
            ws.column_dimensions[column[0].column_letter].width = min(60, width + 2)
    wb.save(str(path))
    normalize_zip(path)


def write_eml(path: Path) -> None:
    msg = EmailMessage()
    for key in ("Subject", "From", "To", "Date", "Message-ID"):
        msg[key] = EML[key]
    msg.set_content(EML["body"])
    for name, data in EML["attachments"].items():
        maintype, subtype = ("application", "pdf") if name.endswith(".pdf") else ("text", "plain")
        if maintype == "text":
            msg.add_attachment(data.decode("utf-8"), subtype=subtype, filename=name)
        else:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    msg.set_boundary("==northwind-office-move-2025==")
    path.write_bytes(msg.as_bytes())


def normalize_zip(path: Path) -> None:
    """Rewrite an OOXML zip with fixed timestamps and fixed core-property dates (byte-identical runs)."""
    stamp = FIXED.strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(path) as zf:
        members = [(info.filename, zf.read(info.filename)) for info in zf.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name, data in members:
            if name == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(r"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", rf"\g<1>{stamp}\2", text)
                data = text.encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            out.writestr(info, data)
    path.write_bytes(buf.getvalue())


def write_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "it_handbook.pdf": write_pdf,
        "hr_leave_policy.docx": write_docx,
        "product_overview.pptx": write_pptx,
        "offices_and_support_sla.xlsx": write_xlsx,
        "office_move_announcement.eml": write_eml,
    }
    written = []
    for name, writer in files.items():
        writer(out / name)
        written.append(out / name)
    (out / "product_faq.html").write_text(HTML_FAQ, encoding="utf-8")
    (out / "it_faq_zh.md").write_text(MD_IT_FAQ_ZH, encoding="utf-8")
    (out / "hr_policy_zh.txt").write_bytes(TXT_HR_ZH.replace("\n", "\r\n").encode("gbk"))
    written += [out / "product_faq.html", out / "it_faq_zh.md", out / "hr_policy_zh.txt"]
    return written


def write_qa(path: Path) -> None:
    lines = [json.dumps(item, ensure_ascii=False) for item in QA]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check(out: Path, qa_path: Path) -> int:
    """Load every file and verify that each evidence snippet is in the extracted text."""
    from kb_assistant.loaders import load_file

    squash = re.compile(r"\s+")
    problems = 0
    texts: dict[tuple[str, int | None], str] = {}
    for path in sorted(out.iterdir()):
        docs = load_file(path)
        print(f"{path.name}: {len(docs)} documents, {sum(len(d.text) for d in docs)} chars")
        for doc in docs:
            page = doc.metadata.get("page")
            for key in ((path.name, None), (path.name, page)):
                texts[key] = texts.get(key, "") + squash.sub("", doc.text)
    for line in qa_path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if not item["answerable"]:
            continue
        key = (item["source"], item.get("page"))
        if squash.sub("", item["evidence"]) not in texts.get(key, ""):
            problems += 1
            print(f"MISSING evidence for {item['question']!r} in {key}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "sample_kb")
    parser.add_argument("--qa", type=Path, default=ROOT / "examples" / "sample_qa.jsonl")
    parser.add_argument("--check", action="store_true", help="load the files and verify the QA evidence")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in write_all(args.out):
        logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
    write_qa(args.qa)
    logger.info("wrote %s (%d questions)", args.qa, len(QA))
    if args.check:
        return 1 if check(args.out, args.qa) else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
