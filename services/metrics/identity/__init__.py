"""Identity links: one person's member ids across platforms, and KPIs that count persons.

Links are made explicitly through the API; matching profiles (the same verified email, the
same username) are only ever *suggested*, never linked automatically, because a shared
username on two platforms is a hint, not proof.
"""
