/** A text field of a submitted form ('' when absent or a file). */
export function formField(f: FormData, name: string): string {
  const v = f.get(name);
  return typeof v === 'string' ? v : '';
}
