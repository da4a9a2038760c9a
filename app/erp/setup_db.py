"""Sets a fresh Tryton database up for the pipeline (run by the launcher in a process of its own).

`python -m app.erp.setup_db CONFIG DATABASE LEGAL_ENTITIES YEAR` — through proteus on the database
itself (no server yet): a company per legal entity (party named like the entity, USD), fiscal years
YEAR-1 .. YEAR+1 with monthly periods, and the chart of SPEC §5.2 under Tryton's minimal chart,
whose account types the accounts take. Day batches go to Tryton's Miscellaneous journal (code MISC).
"""
from __future__ import annotations

import datetime
import sys

# (code, name, kind): the kind picks a Tryton account type of the minimal chart (see _types).
CHART = (
    ("1000", "Tender clearing", "asset"),
    ("1100", "Channel receivable", "asset"),
    ("1200", "Inventory", "asset"),
    ("1210", "Inventory in transit", "asset"),
    ("2000", "Goods received not invoiced", "liability"),
    ("2100", "Sales tax payable", "liability"),
    ("4000", "Sales revenue", "revenue"),
    ("4100", "Sales returns", "revenue"),
    ("5000", "Cost of goods sold", "expense"),
    ("5100", "Shrink and write-off", "expense"),
)


def main(config_file: str, database: str, legal_entities: str, year: int) -> None:
    from proteus import Model, config as proteus_config

    from trytond.modules.account.tests.tools import create_chart, create_fiscalyear
    from trytond.modules.company.tests.tools import create_company

    proteus_config.set_trytond(database=database, config_file=config_file)
    Party = Model.get("party.party")
    Company = Model.get("company.company")
    User = Model.get("res.user")
    for entity in filter(None, (e.strip() for e in legal_entities.split(","))):
        party = Party(name=entity)
        party.save()
        create_company(party=party, currency="USD")
        (company,) = Company.find([("party.name", "=", entity)])
        admin = User(1)
        admin.companies.append(Company(company.id))
        admin.company = Company(company.id)
        admin.save()
        proteus_config.get_config().set_context(User.get_preferences(True, {}))  # now in this company
        for fiscal_year in (year - 1, year, year + 1):
            fy = create_fiscalyear(company, (datetime.date(fiscal_year, 1, 1), datetime.date(fiscal_year, 12, 31)))
            fy.save()
            fy.click("create_period")
        create_chart(company)
        _add_pipeline_chart(Model, company)
        print(f"company {entity} (id {company.id}) set up", flush=True)


def _add_pipeline_chart(Model, company) -> None:
    Account = Model.get("account.account")
    (root,) = Account.find([("company", "=", company.id), ("parent", "=", None)], limit=1)
    types = _types(Model, company)
    for code, name, kind in CHART:
        Account(name=name, code=code, parent=root, type=types[kind], company=company,
                reconcile=False, party_required=False).save()


def _types(Model, company) -> dict:
    Type = Model.get("account.account.type")
    found = {}
    # Leaf types only (those with no children) so the balance sheet and income statement sum them.
    wanted = {
        "asset": [("statement", "=", "balance"), ("assets", "=", True), ("receivable", "=", False),
                  ("stock", "=", False)],
        "liability": [("statement", "=", "balance"), ("assets", "=", False), ("payable", "=", False)],
        "revenue": [("statement", "=", "income"), ("revenue", "=", True)],
        "expense": [("statement", "=", "income"), ("expense", "=", True)],
    }
    for kind, domain in wanted.items():
        candidates = Type.find([("company", "=", company.id), ("childs", "=", None), *domain])
        if not candidates:
            candidates = Type.find([("company", "=", company.id), *domain])
        found[kind] = candidates[0]
    return found


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
