(* One-dimensional calculus lemmas the z3 proofs cite as axioms with premises.

   For a loss L and a step Delta, phi(tau) = L(theta + tau Delta) and
   dphi(tau) = phi'(tau) = <grad L(theta + tau Delta), Delta>.  Every lemma states its
   premises: phi is differentiable on the interval with derivative dphi (Coq's
   derivable_pt_lim), and a pointwise bound on dphi.  No integral is used: each proof
   applies the mean value theorem (MVT_cor2 of Coq's Reals library) to an auxiliary
   function psi whose derivative has a sign.

   Checked by `python -m proofs` (proofs/coq.py runs coqc on this file), which also reads
   back each theorem's statement (Check) and axioms (Print Assumptions).  The names below
   are cited by proofs/axioms.py; a change of a statement here must be mirrored there. *)

Require Import Reals Psatz.
Open Scope R_scope.

(* |x| <= y gives both sides. *)
Lemma abs_le_split : forall x y : R, Rabs x <= y -> - y <= x <= y.
Proof.
  intros x y H.
  assert (x <= Rabs x) by apply Rle_abs.
  assert (- x <= Rabs x) by (rewrite <- Rabs_Ropp; apply Rle_abs).
  lra.
Qed.

(* A function with a nonpositive derivative on [a, b] does not increase from a to b. *)
Lemma nonincreasing_by_mvt :
  forall (f f' : R -> R) (a b : R),
    a <= b ->
    (forall c, a <= c <= b -> derivable_pt_lim f c (f' c)) ->
    (forall c, a <= c <= b -> f' c <= 0) ->
    f b <= f a.
Proof.
  intros f f' a b Hab Hd Hs.
  destruct (Rle_lt_or_eq_dec a b Hab) as [Hlt | Heq].
  - destruct (MVT_cor2 f f' a b Hlt Hd) as [c [Hc Hin]].
    assert (f' c <= 0) by (apply Hs; lra).
    nra.
  - subst; lra.
Qed.

(* A function with a nonnegative derivative on [a, b] does not decrease from a to b. *)
Lemma nondecreasing_by_mvt :
  forall (f f' : R -> R) (a b : R),
    a <= b ->
    (forall c, a <= c <= b -> derivable_pt_lim f c (f' c)) ->
    (forall c, a <= c <= b -> 0 <= f' c) ->
    f a <= f b.
Proof.
  intros f f' a b Hab Hd Hs.
  destruct (Rle_lt_or_eq_dec a b Hab) as [Hlt | Heq].
  - destruct (MVT_cor2 f f' a b Hlt Hd) as [c [Hc Hin]].
    assert (0 <= f' c) by (apply Hs; lra).
    nra.
  - subst; lra.
Qed.

(* (t - p)^2 as a function, and its derivative 2 (t - p). *)
Definition sq (p : R) : R -> R := ((id - fct_cte p) * (id - fct_cte p))%F.

Lemma derivable_sq : forall p t, derivable_pt_lim (sq p) t (2 * (t - p)).
Proof.
  intros p t. unfold sq.
  replace (2 * (t - p)) with
      ((1 - 0) * (id - fct_cte p)%F t + (id - fct_cte p)%F t * (1 - 0))
    by (unfold minus_fct, id, fct_cte; ring).
  apply derivable_pt_lim_mult; apply derivable_pt_lim_minus;
    (apply derivable_pt_lim_id || apply derivable_pt_lim_const).
Qed.

(* psi(t) = phi(t) - s * t + k * (t - p)^2 and its derivative dphi(t) - s + 2 k (t - p). *)
Definition aux (phi : R -> R) (s k p : R) : R -> R :=
  (phi - mult_real_fct s id + mult_real_fct k (sq p))%F.

Lemma derivable_aux :
  forall (phi dphi : R -> R) (s k p t : R),
    derivable_pt_lim phi t (dphi t) ->
    derivable_pt_lim (aux phi s k p) t (dphi t - s * 1 + k * (2 * (t - p))).
Proof.
  intros phi dphi s k p t H. unfold aux.
  apply derivable_pt_lim_plus.
  - apply derivable_pt_lim_minus; [exact H |].
    apply derivable_pt_lim_scal, derivable_pt_lim_id.
  - apply derivable_pt_lim_scal, derivable_sq.
Qed.

Lemma aux_value :
  forall (phi : R -> R) (s k p t : R), aux phi s k p t = phi t - s * t + k * ((t - p) * (t - p)).
Proof.
  intros. unfold aux, sq, plus_fct, minus_fct, mult_real_fct, mult_fct, id, fct_cte. ring.
Qed.

Section Interval.
  Variables (phi dphi : R -> R) (a b K : R).
  Hypothesis Hab : a <= b.
  Hypothesis Hderiv : forall t, a <= t <= b -> derivable_pt_lim phi t (dphi t).

  (* Upper side from the left end: dphi t - dphi a <= K (t - a) on [a, b]. *)
  Lemma upper_from_left :
    (forall t, a <= t <= b -> dphi t - dphi a <= K * (t - a)) ->
    phi b - phi a - dphi a * (b - a) <= K * ((b - a) * (b - a)) / 2.
  Proof.
    intros Hbound.
    assert (H := nonincreasing_by_mvt (aux phi (dphi a) (- (K / 2)) a)
                   (fun t => dphi t - dphi a * 1 + - (K / 2) * (2 * (t - a))) a b Hab).
    rewrite !aux_value in H.
    assert (phi b - dphi a * b + - (K / 2) * ((b - a) * (b - a))
            <= phi a - dphi a * a + - (K / 2) * ((a - a) * (a - a))).
    { apply H.
      - intros c Hc. apply derivable_aux, Hderiv, Hc.
      - intros c Hc. specialize (Hbound c Hc). lra. }
    nra.
  Qed.

  (* Lower side from the left end: dphi a - dphi t <= K (t - a) on [a, b]. *)
  Lemma lower_from_left :
    (forall t, a <= t <= b -> dphi a - dphi t <= K * (t - a)) ->
    - (K * ((b - a) * (b - a)) / 2) <= phi b - phi a - dphi a * (b - a).
  Proof.
    intros Hbound.
    assert (H := nondecreasing_by_mvt (aux phi (dphi a) (K / 2) a)
                   (fun t => dphi t - dphi a * 1 + (K / 2) * (2 * (t - a))) a b Hab).
    rewrite !aux_value in H.
    assert (phi a - dphi a * a + (K / 2) * ((a - a) * (a - a))
            <= phi b - dphi a * b + (K / 2) * ((b - a) * (b - a))).
    { apply H.
      - intros c Hc. apply derivable_aux, Hderiv, Hc.
      - intros c Hc. specialize (Hbound c Hc). lra. }
    nra.
  Qed.

  (* Upper side from the right end: dphi t - dphi b <= K (b - t) on [a, b]. *)
  Lemma upper_from_right :
    (forall t, a <= t <= b -> dphi t - dphi b <= K * (b - t)) ->
    phi b - phi a - dphi b * (b - a) <= K * ((b - a) * (b - a)) / 2.
  Proof.
    intros Hbound.
    assert (H := nonincreasing_by_mvt (aux phi (dphi b) (K / 2) b)
                   (fun t => dphi t - dphi b * 1 + (K / 2) * (2 * (t - b))) a b Hab).
    rewrite !aux_value in H.
    assert (phi b - dphi b * b + (K / 2) * ((b - b) * (b - b))
            <= phi a - dphi b * a + (K / 2) * ((a - b) * (a - b))).
    { apply H.
      - intros c Hc. apply derivable_aux, Hderiv, Hc.
      - intros c Hc. specialize (Hbound c Hc). lra. }
    nra.
  Qed.

  (* Lower side from the right end: dphi b - dphi t <= K (b - t) on [a, b]. *)
  Lemma lower_from_right :
    (forall t, a <= t <= b -> dphi b - dphi t <= K * (b - t)) ->
    - (K * ((b - a) * (b - a)) / 2) <= phi b - phi a - dphi b * (b - a).
  Proof.
    intros Hbound.
    assert (H := nondecreasing_by_mvt (aux phi (dphi b) (- (K / 2)) b)
                   (fun t => dphi t - dphi b * 1 + - (K / 2) * (2 * (t - b))) a b Hab).
    rewrite !aux_value in H.
    assert (phi a - dphi b * a + - (K / 2) * ((a - b) * (a - b))
            <= phi b - dphi b * b + - (K / 2) * ((b - b) * (b - b))).
    { apply H.
      - intros c Hc. apply derivable_aux, Hderiv, Hc.
      - intros c Hc. specialize (Hbound c Hc). lra. }
    nra.
  Qed.
End Interval.

(* T1, the descent-lemma sandwich along the segment.  Premises: phi differentiable on
   [0, 1] with derivative dphi, and the segment form of beta-smoothness
   |dphi(tau) - dphi(0)| <= beta tau D for tau in [0, 1] (D = ||Delta||^2).
   Conclusion: |phi(1) - phi(0) - dphi(0)| <= beta D / 2. *)
Theorem descent_sandwich :
  forall (phi dphi : R -> R) (beta D : R),
    (forall t, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) ->
    (forall t, 0 <= t <= 1 -> Rabs (dphi t - dphi 0) <= beta * t * D) ->
    Rabs (phi 1 - phi 0 - dphi 0) <= beta * D / 2.
Proof.
  intros phi dphi beta D Hd Hs.
  assert (Hup := upper_from_left phi dphi 0 1 (beta * D) ltac:(lra) Hd).
  assert (Hlo := lower_from_left phi dphi 0 1 (beta * D) ltac:(lra) Hd).
  assert (U : phi 1 - phi 0 - dphi 0 * (1 - 0) <= beta * D * ((1 - 0) * (1 - 0)) / 2).
  { apply Hup. intros t Ht. specialize (Hs t Ht).
    apply abs_le_split in Hs. nra. }
  assert (L : - (beta * D * ((1 - 0) * (1 - 0)) / 2) <= phi 1 - phi 0 - dphi 0 * (1 - 0)).
  { apply Hlo. intros t Ht. specialize (Hs t Ht).
    apply abs_le_split in Hs. nra. }
  apply Rabs_le. nra.
Qed.

(* T3, the segment bound.  Premises: phi differentiable on [0, 1] with derivative dphi and
   |dphi(tau)| <= M for tau in [0, 1] (M = G ||Delta||, from Cauchy-Schwarz and
   ||grad L|| <= G on the segment).  Conclusion: |phi(1) - phi(0)| <= M. *)
Theorem segment_bound :
  forall (phi dphi : R -> R) (M : R),
    (forall t, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) ->
    (forall t, 0 <= t <= 1 -> Rabs (dphi t) <= M) ->
    Rabs (phi 1 - phi 0) <= M.
Proof.
  intros phi dphi M Hd Hb.
  destruct (MVT_cor2 phi dphi 0 1 ltac:(lra) Hd) as [c [Hc Hin]].
  rewrite Hc. replace (dphi c * (1 - 0)) with (dphi c) by ring.
  apply Hb. lra.
Qed.

(* T9, the trapezoid bound along one gradient step.  Premises: phi differentiable on [0, 1]
   with derivative dphi, and beta-smoothness along the segment seen from both ends:
   |dphi(tau) - dphi(0)| <= K tau and |dphi(tau) - dphi(1)| <= K (1 - tau) for tau in
   [0, 1] (K = beta ||Delta||^2).  Conclusion:
   |phi(1) - phi(0) - (dphi(0) + dphi(1)) / 2| <= K / 4. *)
Theorem trapezoid_bound :
  forall (phi dphi : R -> R) (K : R),
    (forall t, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) ->
    (forall t, 0 <= t <= 1 -> Rabs (dphi t - dphi 0) <= K * t) ->
    (forall t, 0 <= t <= 1 -> Rabs (dphi t - dphi 1) <= K * (1 - t)) ->
    Rabs (phi 1 - phi 0 - (dphi 0 + dphi 1) / 2) <= K / 4.
Proof.
  intros phi dphi K Hd H0 H1.
  assert (Hd0 : forall t, 0 <= t <= 1 / 2 -> derivable_pt_lim phi t (dphi t))
    by (intros t Ht; apply Hd; lra).
  assert (Hd1 : forall t, 1 / 2 <= t <= 1 -> derivable_pt_lim phi t (dphi t))
    by (intros t Ht; apply Hd; lra).
  assert (U0 : phi (1 / 2) - phi 0 - dphi 0 * (1 / 2 - 0)
               <= K * ((1 / 2 - 0) * (1 / 2 - 0)) / 2).
  { apply (upper_from_left phi dphi 0 (1 / 2) K ltac:(lra) Hd0).
    intros t Ht. assert (Ht' : 0 <= t <= 1) by lra. specialize (H0 t Ht').
    apply abs_le_split in H0. lra. }
  assert (L0 : - (K * ((1 / 2 - 0) * (1 / 2 - 0)) / 2)
               <= phi (1 / 2) - phi 0 - dphi 0 * (1 / 2 - 0)).
  { apply (lower_from_left phi dphi 0 (1 / 2) K ltac:(lra) Hd0).
    intros t Ht. assert (Ht' : 0 <= t <= 1) by lra. specialize (H0 t Ht').
    apply abs_le_split in H0. lra. }
  assert (U1 : phi 1 - phi (1 / 2) - dphi 1 * (1 - 1 / 2)
               <= K * ((1 - 1 / 2) * (1 - 1 / 2)) / 2).
  { apply (upper_from_right phi dphi (1 / 2) 1 K ltac:(lra) Hd1).
    intros t Ht. assert (Ht' : 0 <= t <= 1) by lra. specialize (H1 t Ht').
    apply abs_le_split in H1. lra. }
  assert (L1 : - (K * ((1 - 1 / 2) * (1 - 1 / 2)) / 2)
               <= phi 1 - phi (1 / 2) - dphi 1 * (1 - 1 / 2)).
  { apply (lower_from_right phi dphi (1 / 2) 1 K ltac:(lra) Hd1).
    intros t Ht. assert (Ht' : 0 <= t <= 1) by lra. specialize (H1 t Ht').
    apply abs_le_split in H1. lra. }
  apply Rabs_le. lra.
Qed.

(* ------------------------------------------------------------------------------------
   Negative controls: each theorem below proves that a mutated lemma is FALSE, by a
   concrete counterexample phi.  `python -m proofs` reports them as refuted controls; if a
   mutated statement were provable, the lemmas above would not tell right from wrong.
   ------------------------------------------------------------------------------------ *)

(* phi(t) = t * t, phi'(t) = 1 * t + t * 1 (the product rule, as Coq computes it). *)
Definition square : R -> R := (id * id)%F.
Definition dsquare (t : R) : R := 1 * id t + id t * 1.

Lemma derivable_square : forall t, derivable_pt_lim square t (dsquare t).
Proof.
  intros t. unfold square, dsquare.
  apply derivable_pt_lim_mult; apply derivable_pt_lim_id.
Qed.

(* The descent-lemma sandwich with the segment-smoothness premise dropped is false:
   phi(t) = t^2 with beta = D = 0 has |phi(1) - phi(0) - phi'(0)| = 1 > 0. *)
Theorem sandwich_without_smoothness_is_false :
  ~ (forall (phi dphi : R -> R) (beta D : R),
        (forall t, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) ->
        Rabs (phi 1 - phi 0 - dphi 0) <= beta * D / 2).
Proof.
  intros H.
  specialize (H square dsquare 0 0 (fun t _ => derivable_square t)).
  unfold square, dsquare, mult_fct, id in H.
  replace (1 * 1 - 0 * 0 - (1 * 0 + 0 * 1)) with 1 in H by ring.
  rewrite Rabs_R1 in H. lra.
Qed.

(* The sandwich with beta D / 4 in place of beta D / 2 is false (the constant 1/2 is sharp):
   phi(t) = t^2 with beta = 2, D = 1: |phi'(t) - phi'(0)| = 2 t <= beta t D holds, and
   |phi(1) - phi(0) - phi'(0)| = 1 > beta D / 4 = 1/2. *)
Theorem sandwich_with_a_quarter_is_false :
  ~ (forall (phi dphi : R -> R) (beta D : R),
        (forall t, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) ->
        (forall t, 0 <= t <= 1 -> Rabs (dphi t - dphi 0) <= beta * t * D) ->
        Rabs (phi 1 - phi 0 - dphi 0) <= beta * D / 4).
Proof.
  intros H.
  assert (Hs : forall t, 0 <= t <= 1 -> Rabs (dsquare t - dsquare 0) <= 2 * t * 1).
  { intros t Ht. unfold dsquare, id.
    replace (1 * t + t * 1 - (1 * 0 + 0 * 1)) with (2 * t) by ring.
    rewrite Rabs_pos_eq by lra. lra. }
  specialize (H square dsquare 2 1 (fun t _ => derivable_square t) Hs).
  unfold square, dsquare, mult_fct, id in H.
  replace (1 * 1 - 0 * 0 - (1 * 0 + 0 * 1)) with 1 in H by ring.
  rewrite Rabs_R1 in H. lra.
Qed.

(* The segment bound with its premise |phi'| <= M dropped is false: phi(t) = t^2, M = 0. *)
Theorem segment_without_gradient_bound_is_false :
  ~ (forall (phi dphi : R -> R) (M : R),
        (forall t, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) ->
        Rabs (phi 1 - phi 0) <= M).
Proof.
  intros H.
  specialize (H square dsquare 0 (fun t _ => derivable_square t)).
  unfold square, mult_fct, id in H.
  replace (1 * 1 - 0 * 0) with 1 in H by ring.
  rewrite Rabs_R1 in H. lra.
Qed.
