"""users.valid_email_format matches the whole value: a final newline is not part of an address."""

from __future__ import annotations

import pandas as pd


def test_valid_email_format_refuses_a_trailing_newline():
    from domains.aurora.quality import CHECKS_BY_NAME

    check = CHECKS_BY_NAME["users.valid_email_format"]
    emails = ["user1@aurora-life.example", "user1@aurora-life.example\n", "user2@aurora-life.example\n\n",
              "user@", None]
    users = pd.DataFrame({"email": emails})
    assert check.rule(users).tolist() == [True, False, False, False, False]
    assert check.pandera()(users).check_output.tolist() == [True, False, False, False, False]
