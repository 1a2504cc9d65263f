"""The claims the report tests: one :class:`~core.reproduce.claim.Claim` per entry, in report order.

Adding a claim is one entry here and one ``run(ctx) -> Result`` function (whose docstring cites the paper).
"""

from __future__ import annotations

from . import fractrain, logbtq, mls, niti
from .claim import Claim

__all__ = ["CLAIMS", "get_claim"]

CLAIMS: list[Claim] = [
    Claim("mls-table1", "MLS", "section 1, Table 1 (ResNet-20 column)",
          "Conv (F) 4.05E+07, Conv (B) 8.11E+07, BN (F) 1.88E+05, BN (B) 1.88E+05, Weight Update 2.68E+05",
          mls.table1_gemm),
    Claim("mls-table1-ewadd", "MLS", "section 1, Table 1 (ResNet-20 column)",
          "EW-Add (F) 7.37E+04, EW-Add (B) 7.37E+04", mls.table1_ewadd),
    Claim("mls-eq9", "MLS", "section 5.2, App. E, Eq. 9", "\"over 6.8x more energy-efficient than full precision\"",
          mls.eq9),
    Claim("mls-fig3-grouping", "MLS", "section 5.1.1, Fig. 3 row 1",
          "\"the AREs are smaller when each tensor is split to N x C groups\" (<0,3> elements, <8,1> scales)",
          mls.fig3_grouping),
    Claim("mls-fig3-ex", "MLS", "section 5.1.2, Fig. 3 row 2",
          "\"using more exponent bits results in larger dynamic ranges and smaller AREs\" (<Ex,3>, no group scaling)",
          mls.fig3_ex),
    Claim("mls-fig3-ex-groups", "MLS", "section 5.1.2, Fig. 3 row 3",
          "\"when jointly using the group-wise scaling and the element-wise exponent, the ARE ... [is] further "
          "improved\"", mls.fig3_ex_groups),
    Claim("mls-table3-mx", "MLS", "section 5.1, Table 3", "accuracy falls with Mx in every row (e.g. nc / 0 / 0: "
          "92.14, 91.64, 88.97, 76.98 for Mx = 4..1)", mls.table3_mx),
    Claim("mls-table3-grouping", "MLS", "section 5.1.1, Table 3 (first section)",
          "nc best at every Mx (Mx = 2: nc 88.97, c 82.29, n 80.71, none Div.)", mls.table3_grouping),
    Claim("mls-table3-ex", "MLS", "section 5.1.2, Table 3 (second section)",
          "\"larger Ex achieves better accuracies, especially when Mx is extremely small\" (Mx = 1: Div., 70.4, "
          "90.32, 92.04)", mls.table3_ex),
    Claim("mls-table3-mg", "MLS", "section 5.1.1, Table 3", "\"Mg = 1 is important ... especially with low Mx\" "
          "(Mx = 1: 82.61 vs 76.98)", mls.table3_mg),
    Claim("mls-table3-cifar10", "MLS", "section 5.1, Table 3 (ResNet-20, CIFAR-10)", "the 40 cells of Table 3",
          mls.table3_cifar10),
    Claim("mls-acc16", "MLS", "section 4.2 / 5 (after Table 3)", "<2,4>: products of 2 Mx + 2^(Ex+1) - 2 = 14 bits, "
          "\"the accumulation can be conducted using 16-bit integers\"", mls.acc16),
    Claim("logbtq-table2", "LogBTQ", "section 4, Table 2", "MU8 >= FP8 1-5-2 >= FP8 1-4-3 (MNIST ResNet-18: 99.6, "
          "98.3, 98.1; CIFAR-10: 94.50, 93.21, 92.31)", logbtq.table2),
    Claim("logbtq-eq12", "LogBTQ", "section 3.3, Eq. 9-12", "E(1) ~ 1, L ~ 50, u = 0.1: overflow \"controlled under "
          "2.3%\"", logbtq.eq12),
    Claim("niti-mnist", "NITI", "section 4.3, Fig. 5", "LeNet on MNIST: NITI \"almost identical performance\" to fp32",
          niti.niti_mnist),
    Claim("cpt-bitops", "survey (CPT)", "section on CPT", "\"significantly reduces computational cost ... while "
          "matching or improving upon their performance\"", fractrain.cpt_bitops),
    Claim("cpt-generalises", "survey (CPT)", "section on CPT", "\"Networks trained using CPT tend to generalize better "
          "than those trained with static, low-precision baselines\"", fractrain.cpt_generalises),
    Claim("pfq-bitops", "survey (FracTrain)", "section on FracTrain", "PFQ improves training efficiency over static "
          "precision with \"no noticeable impact to network performance\"", fractrain.pfq_bitops),
    Claim("dfq-bitops", "survey (FracTrain)", "section on FracTrain", "DFQ improves training efficiency over static "
          "precision at similar performance", fractrain.dfq_bitops),
]


def get_claim(claim_id: str) -> Claim:
    """The claim of that id.

    Raises:
        KeyError: no such claim (the message lists the ids).
    """
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise KeyError(f"unknown claim {claim_id!r}; known: {', '.join(c.id for c in CLAIMS)}")
