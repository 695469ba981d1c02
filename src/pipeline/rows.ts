// Writing one 13-tag row held in locals back to memory: the Viterbi and
// forward-backward hot loops keep a position's 13 values in variables (no
// typed-array access per value) and store a row only when it is needed later.

/** row[c..c+13) = v0…v12. */
export function storeRow(
  row: Float64Array, c: number,
  v0: number, v1: number, v2: number, v3: number, v4: number, v5: number, v6: number,
  v7: number, v8: number, v9: number, v10: number, v11: number, v12: number,
): void {
  row[c] = v0;
  row[c + 1] = v1;
  row[c + 2] = v2;
  row[c + 3] = v3;
  row[c + 4] = v4;
  row[c + 5] = v5;
  row[c + 6] = v6;
  row[c + 7] = v7;
  row[c + 8] = v8;
  row[c + 9] = v9;
  row[c + 10] = v10;
  row[c + 11] = v11;
  row[c + 12] = v12;
}
